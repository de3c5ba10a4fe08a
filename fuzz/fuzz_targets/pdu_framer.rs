#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let digests = iscsi::DigestConfig { header: data.first().is_some_and(|b| b & 1 != 0), data: data.first().is_some_and(|b| b & 2 != 0) };
    if let Ok(Some((frame, _))) = iscsi::framer::decode(data.get(1..).unwrap_or(&[]), digests, 1 << 20) {
        let _ = frame.request();
    }
});
