//! The offline source: reads a binlog file (as `mysqlbinlog` does) into the same
//! [`SourceEvent`]s as the live source.
//!
//! Differences from the live source: there is no server to ask for unique keys, so schemas carry
//! the primary key from the binlog metadata only and `unique_keys_known = false`; positions are
//! `file:offset` with the file's base name; MySQL compressed transaction payloads are expanded
//! here (the live stream's driver does it there).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::Path;

use drc_core::change::SourceEvent;
use drc_core::position::{FilePos, Position};
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::{Event, TableMapEvent, TransactionPayloadEvent};
use mysql_common::binlog::BinlogFile;

use crate::assemble::Assembler;
use crate::SourceError;

/// An iterator of [`SourceEvent`]s from one binlog file.
pub struct FileSource {
    path: String,
    file: BinlogFile<BufReader<File>>,
    asm: Assembler,
    /// Events expanded from a transaction payload, not yet handled.
    inner: VecDeque<Event>,
    failed: bool,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("path", &self.path)
            .finish()
    }
}

/// Opens a binlog file for reading.
pub fn read_file(path: impl AsRef<Path>) -> Result<FileSource, SourceError> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let err = |source| SourceError::File {
        path: shown.clone(),
        source,
    };
    let f = File::open(path).map_err(err)?;
    let file = BinlogFile::new(
        BinlogVersion::Version4,
        BufReader::with_capacity(1 << 20, f),
    )
    .map_err(err)?;
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(FileSource {
        path: shown,
        file,
        asm: Assembler::new(&Position::File(FilePos {
            file: base,
            offset: 4,
        })),
        inner: VecDeque::new(),
        failed: false,
    })
}

impl FileSource {
    fn handle(&mut self, ev: &Event, outer: bool) -> Result<Option<SourceEvent>, SourceError> {
        if ev.header().event_type_raw() == 0x13 {
            let tme: TableMapEvent<'_> = ev.read_event().map_err(SourceError::event)?;
            self.asm.table_map(&tme)?;
        }
        self.asm.handle(ev, outer)
    }

    fn expand_payload(&mut self, ev: &Event) -> Result<(), SourceError> {
        let tpe: TransactionPayloadEvent<'_> = ev.read_event().map_err(SourceError::event)?;
        let mut data = Vec::new();
        std::io::Read::read_to_end(
            &mut tpe.decompressed().map_err(SourceError::event)?,
            &mut data,
        )
        .map_err(SourceError::event)?;
        let mut cursor = Cursor::new(data);
        while let Some(inner) = self
            .file
            .reader_mut()
            .read_decompressed(&mut cursor)
            .map_err(SourceError::event)?
        {
            self.inner.push_back(inner);
        }
        Ok(())
    }

    fn next_event(&mut self) -> Option<Result<SourceEvent, SourceError>> {
        loop {
            if let Some(ev) = self.inner.pop_front() {
                match self.handle(&ev, false) {
                    Ok(Some(se)) => return Some(Ok(se)),
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                }
            }
            let ev = match self.file.next()? {
                Ok(ev) => ev,
                Err(e) => {
                    return Some(Err(SourceError::File {
                        path: self.path.clone(),
                        source: e,
                    }))
                }
            };
            if ev.header().event_type_raw() == 0x28 {
                // Positions advance by the outer event; its contents are handled next.
                if let Err(e) = self.asm.handle(&ev, true) {
                    return Some(Err(e));
                }
                if let Err(e) = self.expand_payload(&ev) {
                    return Some(Err(e));
                }
                continue;
            }
            match self.handle(&ev, true) {
                Ok(Some(se)) => return Some(Ok(se)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl Iterator for FileSource {
    type Item = Result<SourceEvent, SourceError>;

    /// The next event; after an error the iterator ends (a damaged file is not read past).
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_event();
        if matches!(item, Some(Err(_))) {
            self.failed = true;
        }
        item
    }
}
