//! JPEG files: any bytes decode to a planar RGB image of the declared size within the pixel cap,
//! or give an error; never a panic or an allocation the header alone asked for.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = rbl::data::jpeg::decode_jpeg(data, std::path::Path::new("fuzz.jpg")) {
        assert_eq!(img.pixels.len(), 3 * img.width * img.height);
        assert!(img.width * img.height <= rbl::data::jpeg::MAX_PIXELS);
    }
});
