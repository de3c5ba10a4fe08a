#![no_main]
// PR OUT, UNMAP and MODE SELECT parameter lists: the first byte picks the parser and
// its mode (PR OUT service action, MODE SELECT 6 or 10), the rest is the list.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&sel, list)) = data.split_first() else {
        return;
    };
    match sel % 3 {
        0 => {
            let _ = scsi::params::PrOutParams::parse(sel >> 5, list);
        }
        1 => {
            let _ = scsi::params::UnmapList::parse(list, 1024);
        }
        _ => {
            let _ = scsi::params::ModeSelectList::parse(sel & 0x80 != 0, list);
        }
    }
});
