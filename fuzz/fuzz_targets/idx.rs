//! IDX files (plain and gzipped): any bytes give an array whose size matches its header, or an
//! error; never a panic or an allocation the header alone asked for.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = rbl::data::idx::parse_idx(data, std::path::Path::new("fuzz.idx")) {
        assert_eq!(a.data.len(), a.dims.iter().product::<usize>());
    }
});
