//! Segment files: `seg-<first sequence number, 20 digits>.log`, an 8-byte
//! magic, then frames (see [`super::frame`]). Record `i` of a segment has
//! sequence number `base + i`. Only the writer appends, and only to the
//! newest segment; older segments are sealed and deleted whole once every
//! record in them is acknowledged.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;
use tollgate_proto::sync::v1 as pb;

use super::frame::{self, FrameError, HEADER_LEN};
use super::SpoolError;

/// First bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"TGSPOOL1";
const PREFIX: &str = "seg-";
const SUFFIX: &str = ".log";

/// A segment as the spool tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub base: u64,
    /// Valid records.
    pub count: u64,
    /// Bytes of the file that hold valid records (magic included).
    pub len: u64,
    pub path: PathBuf,
}

impl Segment {
    /// Sequence number after the last record.
    pub fn end(&self) -> u64 {
        self.base + self.count
    }
}

pub fn file_name(base: u64) -> String {
    format!("{PREFIX}{base:020}{SUFFIX}")
}

/// The base sequence number encoded in a segment file name.
pub fn parse_name(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

/// Segment files in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let entries = std::fs::read_dir(dir).map_err(|e| SpoolError::io(dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SpoolError::io(dir, e))?;
        if let Some(base) = entry.file_name().to_str().and_then(parse_name) {
            found.push((base, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// What a scan of a segment found.
#[derive(Debug)]
pub struct Scan {
    pub count: u64,
    /// End of the last valid record.
    pub valid_len: u64,
    pub file_len: u64,
    /// Why the scan stopped before the end of the file, if it did.
    pub damage: Option<String>,
}

/// Reads frames in order from an open segment.
pub struct FrameReader {
    reader: BufReader<File>,
    pub offset: u64,
    limit: u64,
}

/// One step of [`FrameReader::next_payload`].
pub enum NextPayload {
    /// An encoded `UsageRecord` whose checksum matched.
    Record(Bytes),
    /// Clean end: `offset == limit`.
    End,
    /// The bytes at `offset` are not a whole valid record.
    Damaged(String),
}

/// One step of a [`FrameReader`].
pub enum Next {
    Record(Box<pb::UsageRecord>),
    /// Clean end: `offset == limit`.
    End,
    /// The bytes at `offset` are not a whole valid record.
    Damaged(String),
}

impl FrameReader {
    /// Opens `path` at `offset` (after the magic when 0), reading no further
    /// than `limit` bytes into the file (`None`: the whole file).
    pub fn open(path: &Path, offset: u64, limit: Option<u64>) -> Result<FrameReader, SpoolError> {
        let mut file = File::open(path).map_err(|e| SpoolError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| SpoolError::io(path, e))?.len();
        let limit = limit.unwrap_or(file_len).min(file_len);
        let offset = if offset == 0 {
            let mut magic = [0u8; 8];
            match file.read_exact(&mut magic) {
                Ok(()) if &magic == MAGIC => MAGIC.len() as u64,
                Ok(()) => return Err(SpoolError::NotASegment(path.display().to_string())),
                // Torn while being created: no record in it.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => limit,
                Err(e) => return Err(SpoolError::io(path, e)),
            }
        } else {
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| SpoolError::io(path, e))?;
            offset
        };
        Ok(FrameReader {
            reader: BufReader::with_capacity(64 * 1024, file),
            offset,
            limit,
        })
    }

    /// The next record, decoded (recovery scans: a payload that does not
    /// decode is damage).
    pub fn next_frame(&mut self) -> Next {
        match self.next_payload() {
            NextPayload::Record(payload) => match pb::UsageRecord::decode(payload.as_ref()) {
                Ok(record) => Next::Record(Box::new(record)),
                Err(e) => {
                    // Not consumed: the scan stops here, as for any damage.
                    self.offset -= (HEADER_LEN + payload.len()) as u64;
                    Next::Damaged(FrameError::Decode(e.to_string()).to_string())
                }
            },
            NextPayload::End => Next::End,
            NextPayload::Damaged(why) => Next::Damaged(why),
        }
    }

    /// The next record's encoded payload, checksum verified but not
    /// decoded (what the reporter sends).
    pub fn next_payload(&mut self) -> NextPayload {
        let remaining = self.limit.saturating_sub(self.offset);
        if remaining == 0 {
            return NextPayload::End;
        }
        if remaining < HEADER_LEN as u64 {
            return NextPayload::Damaged(format!(
                "{remaining} trailing bytes (torn record header)"
            ));
        }
        let mut header = [0u8; HEADER_LEN];
        if let Err(e) = self.reader.read_exact(&mut header) {
            return NextPayload::Damaged(format!("read failed: {e}"));
        }
        let len = match frame::payload_len(&header) {
            Ok(len) => len,
            Err(e) => return NextPayload::Damaged(e.to_string()),
        };
        if remaining < (HEADER_LEN + len) as u64 {
            return NextPayload::Damaged(format!(
                "record of {len} bytes cut short at {remaining} bytes (torn write)"
            ));
        }
        let mut payload = vec![0u8; len];
        if let Err(e) = self.reader.read_exact(&mut payload) {
            return NextPayload::Damaged(format!("read failed: {e}"));
        }
        match frame::verify(&header, &payload) {
            Ok(()) => {
                self.offset += (HEADER_LEN + len) as u64;
                NextPayload::Record(Bytes::from(payload))
            }
            Err(e) => NextPayload::Damaged(e.to_string()),
        }
    }
}

/// Counts the valid records of a segment file, stopping at the first
/// damaged one.
pub fn scan(path: &Path) -> Result<Scan, SpoolError> {
    let file_len = std::fs::metadata(path)
        .map_err(|e| SpoolError::io(path, e))?
        .len();
    let mut reader = FrameReader::open(path, 0, None)?;
    let mut count = 0;
    let damage = loop {
        match reader.next_frame() {
            Next::Record(_) => count += 1,
            Next::End => break None,
            Next::Damaged(why) => break Some(why),
        }
    };
    Ok(Scan {
        count,
        valid_len: reader.offset,
        file_len,
        damage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_sequence() {
        assert_eq!(file_name(42), "seg-00000000000000000042.log");
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert_eq!(parse_name("seg-x.log"), None);
        assert_eq!(parse_name("acked"), None);
        assert!(file_name(9) < file_name(10));
    }
}
