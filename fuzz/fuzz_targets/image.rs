//! Image files (JPEG, PNG, WebP): any bytes decode to a planar RGB image of the declared size
//! within the pixel cap, or give an error; never a panic or an allocation the header alone
//! asked for.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = rbl::data::decode::decode_image(data, std::path::Path::new("fuzz.img")) {
        assert_eq!(img.pixels.len(), 3 * img.width * img.height);
        assert!(img.width * img.height <= rbl::data::decode::MAX_PIXELS);
    }
});
