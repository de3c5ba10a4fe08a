#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = scsi::tpc::lid1::parse(data);
    let _ = scsi::tpc::lid1::parse_lid4(data);
});
