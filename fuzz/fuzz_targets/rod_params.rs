#![no_main]
// POPULATE TOKEN and WRITE USING TOKEN parameter lists and the token check, against
// an LU of either block size: errors are fine, panics are not.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use scsi::tpc::rod::{check_token, PopulateToken, RangeLimits, WriteUsingToken};
    for block_size in [512, 4096] {
        let lu = RangeLimits {
            capacity: 1 << 24,
            block_size,
        };
        let _ = PopulateToken::parse(data, lu);
        let _ = WriteUsingToken::parse(data, lu);
    }
    let _ = check_token(data.get(..512).unwrap_or(data));
});
