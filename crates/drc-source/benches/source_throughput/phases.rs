//! The phases child: where the time goes (framing vs decoding).

#[allow(unused_imports)]
use super::*;

/// `--phases URL FILE:START FILE:END`: streams the span twice with a bare mysql_async binlog
/// stream (no `Source`): (1) framing only (socket, packet codec, event header; events dropped),
/// (2) framing plus decoding every rows event with [`TableDecoder`], the decode timed inline
/// (data still hot in cache, as in the `Source`). Prints one `PHASES {json}` line.
pub(crate) fn phases_main(args: &[String]) {
    let [url, start, end] = args else {
        panic!("usage: --phases URL FILE:START FILE:END");
    };
    let start: FilePos = start.parse().expect("start file position");
    let end: FilePos = end.parse().expect("end file position");
    assert_eq!(
        start.file, end.file,
        "the phases split needs a span within one binlog file"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (framing, full) = rt.block_on(async {
        tokio::time::timeout(MEASURE_DEADLINE, async {
            let framing = stream_span(url, &start, &end, false).await;
            let full = stream_span(url, &start, &end, true).await;
            (framing, full)
        })
        .await
        .unwrap_or_else(|_| panic!("phases did not finish within {MEASURE_DEADLINE:?}"))
    });
    println!(
        "PHASES {}",
        serde_json::json!({
            "events": full.events,
            "bytes": full.bytes,
            "rows": full.rows,
            "framing_secs": framing.secs,
            "framing_cpu_secs": framing.cpu_secs,
            "stream_decode_secs": full.secs,
            "stream_decode_cpu_secs": full.cpu_secs,
            "decode_secs": full.decode_secs,
        })
    );
}

pub(crate) struct Streamed {
    pub(crate) events: u64,
    pub(crate) bytes: u64,
    pub(crate) rows: u64,
    pub(crate) secs: f64,
    pub(crate) cpu_secs: f64,
    pub(crate) decode_secs: f64,
}

pub(crate) async fn stream_span(
    url: &str,
    start: &FilePos,
    end: &FilePos,
    decode: bool,
) -> Streamed {
    use futures_util::StreamExt;
    use mysql_common::binlog::events::{EventData, TableMapEvent};
    use std::collections::HashMap;

    let mut conn = drc_testkit::connect(url).await;
    q(&mut conn, "SET @mariadb_slave_capability = 4").await;
    let file = start.file.clone().into_bytes();
    let request = mysql_async::BinlogStreamRequest::new(4_500_000 + std::process::id())
        .with_filename(&file)
        .with_pos(start.offset);
    let mut stream = conn
        .get_binlog_stream(request)
        .await
        .expect("binlog stream");
    let mut decoders: HashMap<u64, (TableMapEvent<'static>, TableDecoder)> = HashMap::new();
    let (mut events, mut bytes, mut rows, mut decode_secs) = (0u64, 0u64, 0u64, 0f64);
    let cpu0 = thread_cpu_secs();
    let began = Instant::now();
    while let Some(ev) = stream.next().await {
        let ev = ev.expect("binlog event");
        let pos = u64::from(ev.header().log_pos());
        events += 1;
        bytes += u64::from(ev.header().event_size());
        if decode {
            let t = Instant::now();
            match ev.header().event_type_raw() {
                0x13 => {
                    let tme: TableMapEvent<'_> = ev.read_event().expect("table map");
                    if decoders.get(&tme.table_id()).is_none_or(|(t, _)| *t != tme) {
                        let d = TableDecoder::new(&tme).expect("table decoder");
                        decoders.insert(tme.table_id(), (tme.into_owned(), d));
                    }
                }
                ty @ (0x17..=0x19 | 0x1e..=0x20) => {
                    let Some(EventData::RowsEvent(r)) = ev.read_data().expect("rows event") else {
                        panic!("unreadable rows event");
                    };
                    let kind = match ty {
                        0x17 | 0x1e => ChangeKind::Insert,
                        0x18 | 0x1f => ChangeKind::Update,
                        _ => ChangeKind::Delete,
                    };
                    let (_, d) = decoders.get(&r.table_id()).expect("table map before rows");
                    let mut out = Vec::new();
                    d.decode_rows(
                        kind,
                        r.columns_before_image(),
                        r.columns_after_image(),
                        r.rows_data(),
                        &mut out,
                    )
                    .expect("decode rows");
                    rows += out.len() as u64;
                }
                _ => {}
            }
            decode_secs += t.elapsed().as_secs_f64();
        }
        // The fake ROTATE and the FORMAT_DESCRIPTION replayed at the start carry no position
        // past `end`; every later event of this file does.
        if pos >= end.offset {
            break;
        }
    }
    let secs = began.elapsed().as_secs_f64();
    let cpu_secs = thread_cpu_secs() - cpu0;
    let _ = stream.close().await;
    Streamed {
        events,
        bytes,
        rows,
        secs,
        cpu_secs,
        decode_secs,
    }
}
