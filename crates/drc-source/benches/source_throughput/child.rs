//! The measuring child: streams a span through a `Source` and checks every row.

#[allow(unused_imports)]
use super::*;

/// `--measure URL START END CHECK`: streams START..END through a `Source`, verifies, prints
/// one `RESULT {json}` line.
pub(crate) fn measure_main(args: &[String]) {
    let [url, start, end, check] = args else {
        panic!("usage: --measure URL START END CHECK");
    };
    let start: Position = start.parse().expect("start position");
    let end: Position = end.parse().expect("end position");
    let check = Check::decode(check);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let m = rt.block_on(async {
        tokio::time::timeout(MEASURE_DEADLINE, measure(url, start, end, check))
            .await
            .unwrap_or_else(|_| panic!("measurement did not finish within {MEASURE_DEADLINE:?}"))
    });
    println!(
        "RESULT {}",
        serde_json::json!({
            "secs": m.secs,
            "cpu_secs": m.cpu_secs,
            "rows": m.rows,
            "rows_events": m.rows_events,
            "commits": m.commits,
            "max_batch": m.max_batch,
            "base_hwm_kb": m.base_hwm_kb,
            "hwm_kb": m.hwm_kb,
        })
    );
}

/// Running checks over the row changes of an [`Check::Sbtest`] stream.
#[derive(Debug, Default)]
pub(crate) struct SbtestTally {
    pub(crate) inserts: u64,
    pub(crate) updates: u64,
    pub(crate) deletes: u64,
    pub(crate) insert_id_sum: u64,
    pub(crate) update_id_sum: u64,
    pub(crate) delete_id_sum: u64,
}

pub(crate) fn int_at(rc: &RowChange, after: bool, col: usize) -> i64 {
    let img = if after { &rc.after } else { &rc.before };
    match img.as_ref().and_then(|i| i.get(col)) {
        Some(Value::Int(v)) => *v,
        other => panic!(
            "{} row: column {col} is {other:?}, expected an INT",
            rc.kind
        ),
    }
}

pub(crate) fn text_len_at(rc: &RowChange, after: bool, col: usize) -> usize {
    let img = if after { &rc.after } else { &rc.before };
    match img.as_ref().and_then(|i| i.get(col)) {
        Some(Value::Text(t)) => t.bytes.len(),
        other => panic!("{} row: column {col} is {other:?}, expected text", rc.kind),
    }
}

impl SbtestTally {
    pub(crate) fn add(&mut self, rc: &RowChange) {
        let id = |after| u64::try_from(int_at(rc, after, 0)).expect("positive id");
        match rc.kind {
            ChangeKind::Insert => {
                assert!(rc.before.is_none(), "insert with a before image");
                assert_eq!(text_len_at(rc, true, 2), 120, "c is CHAR(120) of hex");
                assert_eq!(text_len_at(rc, true, 3), 60, "pad is CHAR(60) of hex");
                self.inserts += 1;
                self.insert_id_sum += id(true);
            }
            ChangeKind::Update => {
                let (b, a) = (id(false), id(true));
                assert_eq!(b, a, "update changed the id");
                assert_eq!(
                    int_at(rc, true, 1),
                    int_at(rc, false, 1) + 1,
                    "update sets k = k + 1"
                );
                self.updates += 1;
                self.update_id_sum += a;
            }
            ChangeKind::Delete => {
                assert!(rc.after.is_none(), "delete with an after image");
                self.deletes += 1;
                self.delete_id_sum += id(false);
            }
        }
    }

    pub(crate) fn verify(&self, inserts: u64, updates: u64, deletes: u64) {
        let sum = |from: u64, to: u64| (from..=to).sum::<u64>();
        assert_eq!(
            (self.inserts, self.updates, self.deletes),
            (inserts, updates, deletes),
            "row change counts (insert, update, delete)"
        );
        assert_eq!(self.insert_id_sum, sum(1, inserts), "sum of inserted ids");
        assert_eq!(self.update_id_sum, sum(1, updates), "sum of updated ids");
        assert_eq!(
            self.delete_id_sum,
            sum(inserts - deletes + 1, inserts),
            "sum of deleted ids"
        );
    }
}

pub(crate) fn check_blob(rc: &RowChange, len: usize) {
    assert_eq!(rc.kind, ChangeKind::Insert, "blob row kind");
    assert_eq!(int_at(rc, true, 0), 1, "blob row id");
    match rc.after.as_ref().and_then(|i| i.get(1)) {
        Some(Value::Bytes(b)) => {
            assert_eq!(b.len(), len, "blob length");
            if let Some(at) = b.iter().zip(blob_bytes(len)).position(|(x, y)| *x != y) {
                panic!("blob differs at byte {at}");
            }
        }
        Some(other) => panic!("blob column decoded as {:?}", std::mem::discriminant(other)),
        None => panic!("blob column missing"),
    }
}

pub(crate) async fn measure(url: &str, start: Position, end: Position, check: Check) -> Measured {
    let mut cfg = SourceConfig::new(url, 4_000_000 + std::process::id());
    cfg.start = StartFrom::Position(start);
    // A stall is a failure here, not something to wait out.
    cfg.max_reconnects = Some(1);
    let mut src = Source::connect(cfg).await.expect("source connects");
    let base_hwm_kb = vm_hwm_kb();
    let expected = check.total_rows();
    let mut tally = SbtestTally::default();
    let (mut rows, mut rows_events, mut commits, mut max_batch) = (0u64, 0u64, 0u64, 0usize);
    let cpu0 = thread_cpu_secs();
    let began = Instant::now();
    loop {
        match src.next().await.expect("source event") {
            SourceEvent::Begin(_) | SourceEvent::Ddl(_) => {}
            SourceEvent::Rows(batch) => {
                rows_events += 1;
                rows += batch.len() as u64;
                max_batch = max_batch.max(batch.len());
                assert!(
                    rows <= expected,
                    "more than the {expected} expected row changes before the end position"
                );
                match check {
                    Check::Sbtest { .. } => batch.iter().for_each(|rc| tally.add(rc)),
                    Check::Blob { len } => batch.iter().for_each(|rc| check_blob(rc, len)),
                }
            }
            SourceEvent::Commit(c) => {
                commits += 1;
                if c.position == end {
                    break;
                }
            }
        }
    }
    let secs = began.elapsed().as_secs_f64();
    let cpu_secs = thread_cpu_secs() - cpu0;
    assert_eq!(rows, expected, "row changes up to the end position");
    if let Check::Sbtest {
        inserts,
        updates,
        deletes,
    } = check
    {
        tally.verify(inserts, updates, deletes);
    }
    let hwm_kb = vm_hwm_kb();
    src.close().await;
    Measured {
        secs,
        cpu_secs,
        rows,
        rows_events,
        commits,
        max_batch,
        base_hwm_kb,
        hwm_kb,
    }
}
