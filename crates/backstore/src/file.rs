//! Regular files and block devices through positional I/O (pread/pwrite).

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{check_range, Backstore};

/// A file or block device.
#[derive(Debug)]
pub struct FileBackstore {
    file: File,
    path: PathBuf,
    size: u64,
    block_device: bool,
}

impl FileBackstore {
    /// Opens an existing file or block device. With `create_size`, a missing regular
    /// file is created sparse at that size. The size is the file's (or device's) size.
    pub fn open(path: &Path, read_only: bool, create_size: Option<u64>) -> io::Result<Self> {
        let exists = path.exists();
        if !exists && create_size.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "backing file {} does not exist and no size was given",
                    path.display()
                ),
            ));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .create(!exists && !read_only)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let meta = file.metadata()?;
        let block_device = {
            use std::os::unix::fs::FileTypeExt;
            meta.file_type().is_block_device()
        };
        if !exists {
            if let Some(size) = create_size {
                file.set_len(size)?;
            }
        }
        // For block devices metadata().len() is 0; seeking to the end gives the size.
        let size = if block_device {
            file.seek(SeekFrom::End(0))?
        } else {
            file.metadata()?.len()
        };
        if let Some(want) = create_size {
            if exists && !block_device && size < want && !read_only {
                file.set_len(want)?;
                return Ok(Self {
                    file,
                    path: path.to_owned(),
                    size: want,
                    block_device,
                });
            }
        }
        Ok(Self {
            file,
            path: path.to_owned(),
            size,
            block_device,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Backstore for FileBackstore {
    fn kind(&self) -> &'static str {
        if self.block_device {
            "block"
        } else {
            "file"
        }
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(offset, buf.len(), self.size)?;
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        check_range(offset, buf.len(), self.size)?;
        self.file.write_all_at(buf, offset)?;
        if fua {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("oxtgt-bs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn creates_sparse_and_round_trips() {
        let p = tmp("rt");
        let b = FileBackstore::open(&p, false, Some(1 << 20)).unwrap();
        assert_eq!(b.size(), 1 << 20);
        b.write_at(b"abc", 4096, true).unwrap();
        let mut out = [0u8; 5];
        b.read_at(&mut out, 4095).unwrap();
        assert_eq!(&out, b"\0abc\0");
        assert!(b.write_at(b"x", 1 << 20, false).is_err());
        drop(b);
        assert_eq!(std::fs::read(&p).unwrap()[4096..4099], *b"abc");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn missing_without_size_names_path() {
        let p = tmp("missing");
        let e = FileBackstore::open(&p, false, None).unwrap_err();
        assert!(e.to_string().contains(p.to_str().unwrap()));
    }
}
