//! Tests of the parent module.

use super::*;

const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const U2: &str = "4b2a0b6e-0000-11e1-9e33-c80aa9429562";

fn uuid(s: &str) -> Uuid {
    Uuid::try_parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn parse<T: FromStr<Err = PositionError>>(s: &str) -> T {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn parse_err<T: FromStr<Err = PositionError> + fmt::Debug>(s: &str) -> String {
    match s.parse::<T>() {
        Ok(v) => panic!("{s:?} parsed as {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn maria_gtid() {
    let g: MariaGtid = parse("0-1-24");
    assert_eq!((g.domain, g.server_id, g.seq), (0, 1, 24));
    assert_eq!(g.to_string(), "0-1-24");
    let max = format!("{}-{}-{}", u32::MAX, u32::MAX, u64::MAX);
    assert_eq!(parse::<MariaGtid>(&max).to_string(), max);
    for bad in [
        "",
        "0-1",
        "0-1-2-3",
        "+0-1-2",
        "0--2",
        "a-1-2",
        "4294967296-1-2",
        "0-1-2 ",
    ] {
        assert!(
            parse_err::<MariaGtid>(bad).contains("invalid MariaDB GTID"),
            "{bad}"
        );
    }
    assert!(parse_err::<MariaGtid>("4294967296-1-2").contains("domain: `4294967296` is too large"));
}

#[test]
fn maria_list() {
    let l: MariaGtidList = parse(" 5-100-1 , 0-1-24");
    assert_eq!(l.to_string(), "0-1-24,5-100-1");
    assert_eq!(l.len(), 2);
    assert_eq!(l.get(5).map(|g| g.seq), Some(1));
    assert_eq!(l.get(1), None);
    let domains: Vec<u32> = l.iter().map(|g| g.domain).collect();
    assert_eq!(domains, [0, 5]);
    assert!(parse::<MariaGtidList>("").is_empty());
    assert!(parse::<MariaGtidList>("  ").is_empty());
    let err = parse_err::<MariaGtidList>("0-1-24,0-2-30");
    assert!(
        err.contains("two entries for domain 0 (`0-1-24` and `0-2-30`)"),
        "{err}"
    );
    assert!(parse_err::<MariaGtidList>("0-1-24,").contains("invalid MariaDB GTID ``"));

    let mut l = MariaGtidList::new();
    l.update(MariaGtid {
        domain: 0,
        server_id: 1,
        seq: 1,
    });
    l.update(MariaGtid {
        domain: 0,
        server_id: 2,
        seq: 2,
    });
    assert_eq!(l.to_string(), "0-2-2");
}

#[test]
fn mysql_set_canonical_and_lenient() {
    let canonical = format!("{U1}:1-5:7,{U2}:1-100");
    assert_eq!(parse::<MysqlGtidSet>(&canonical).to_string(), canonical);
    let messy = format!(
        ",{},\n  {U1}:7:3-4:1-2:5 , ",
        U2.to_uppercase() + ":1-50:40-100"
    );
    assert_eq!(parse::<MysqlGtidSet>(&messy).to_string(), canonical);
    // Same uuid twice, single numbers, adjacency merges.
    let s: MysqlGtidSet = parse(&format!("{U1}:1:2:4,{U1}:3"));
    assert_eq!(s.to_string(), format!("{U1}:1-4"));
    assert!(parse::<MysqlGtidSet>("").is_empty());
    assert!(parse::<MysqlGtidSet>(" \n").is_empty());
}

#[test]
fn mysql_set_tags() {
    let s: MysqlGtidSet = parse(&format!("{U1}:1-3:Beta:5:alpha:2,{U1}:beta:4"));
    assert_eq!(s.to_string(), format!("{U1}:1-3:alpha:2:beta:4-5"));
    let groups: Vec<_> = s.iter().map(|(_, t, iv)| (t, iv.to_vec())).collect();
    let expected = [
        (None, vec![(1, 3)]),
        (Some("alpha"), vec![(2, 2)]),
        (Some("beta"), vec![(4, 5)]),
    ];
    assert_eq!(groups, expected);
    assert!(s.contains(uuid(U1), Some("BETA"), 5));
    assert!(!s.contains(uuid(U1), Some("beta"), 3));
    assert!(s.contains(uuid(U1), None, 3));
    assert!(!s.contains(uuid(U2), None, 3));
    let tag32 = "_".repeat(32);
    assert!(s.clone().add(uuid(U1), Some(&tag32), 1).is_ok());
}

#[test]
fn mysql_set_errors() {
    let cases = [
        (format!("{U1}:0-5"), "byte 37 (`0-5`): transaction number 0"),
        (format!("{U1}:5-3"), "start is greater than its end"),
        (format!("{U1}:1-x"), "`x` is not a decimal number"),
        (format!("{U1}:1-9223372036854775807"), "larger than"),
        (format!("{U1}:1-99999999999999999999"), "too large"),
        ("3e11fa47-71ca-11e1-9e33-c80aa942956:1".to_owned(), "byte 0"),
        (
            "3e11fa47-71ca-11e1-9e33-c80aa942956z:1".to_owned(),
            "not a valid UUID",
        ),
        (format!("{U1}:1,xx"), "byte 39 (`xx`): expected a UUID"),
        (U1.to_owned(), "not followed by any interval"),
        (format!("{U1}:1:"), "empty interval"),
        (format!("{U1}:1::2"), "empty interval"),
        (format!("{U1}:t1:t2:1"), "(`t1`): tag is not followed"),
        (format!("{U1}:1:t1"), "(`t1`): not followed by any interval"),
        (format!("{U1}:1:bad-tag:1"), "letters, digits and `_`"),
        (format!("{U1}:1:{}:1", "a".repeat(33)), "at most 32"),
    ];
    for (text, expected) in cases {
        let err = parse_err::<MysqlGtidSet>(&text);
        assert!(err.contains(expected), "{text}: {err}");
    }
    let mut s = MysqlGtidSet::new();
    assert_eq!(s.add(uuid(U1), None, 0), Err(PositionError::Gno { gno: 0 }));
    assert!(s.add(uuid(U1), Some("9x"), 1).is_err());
    assert_eq!(
        s.add_interval(uuid(U1), None, 3, 2),
        Err(PositionError::EmptyInterval { start: 3, end: 2 })
    );
    assert!(s.add_interval(uuid(U1), None, 1, MAX_GNO + 1).is_err());
    assert!(s.is_empty());
}

#[test]
fn file_pos() {
    let p: FilePos = parse("mysql-bin.000003:1234");
    assert_eq!(
        p,
        FilePos {
            file: "mysql-bin.000003".into(),
            offset: 1234
        }
    );
    assert_eq!(p.to_string(), "mysql-bin.000003:1234");
    for (bad, why) in [
        ("mysql-bin.000003", "missing `:offset`"),
        (":4", "file name is empty"),
        ("a:b:4", "contains `:`"),
        ("a b:4", "whitespace"),
        ("bin:3", "smallest offset is 4"),
        ("bin:-4", "not a decimal number"),
        ("bin:", "number is missing"),
    ] {
        let err = parse_err::<FilePos>(bad);
        assert!(err.contains(why), "{bad}: {err}");
    }
}

#[test]
fn position_inference_and_prefixes() {
    let cases = [
        ("0-1-24,5-100-1", "0-1-24,5-100-1", "MariaGtid"),
        (" 0-1-24 ", "0-1-24", "MariaGtid"),
        ("mariadb:", "mariadb:", "MariaGtid"),
        ("mariadb:0-1-2", "0-1-2", "MariaGtid"),
        (&format!("{U1}:1-5"), &format!("{U1}:1-5"), "MysqlGtid"),
        ("mysql:", "mysql:", "MysqlGtid"),
        ("mysql-bin.000003:1234", "mysql-bin.000003:1234", "File"),
        ("file:mysql:4", "file:mysql:4", "File"),
        (&format!("file:{U1}:4"), &format!("file:{U1}:4"), "File"),
    ];
    for (text, display, kind) in cases {
        let p: Position = parse(text);
        assert!(format!("{p:?}").starts_with(kind), "{text}: {p:?}");
        assert_eq!(p.to_string(), display, "{text}");
        assert_eq!(parse::<Position>(display), p);
    }
    for bad in ["", "hello", "0-1-x"] {
        let err = parse_err::<Position>(bad);
        for form in [
            "0-1-24,5-100-1",
            "c80aa9429562:1-5",
            "mysql-bin.000003:1234",
        ] {
            assert!(err.contains(form), "{bad}: {err}");
        }
    }
    assert!(parse_err::<Position>("bin:2").contains("as a file position, offset 2"));
    assert!(parse_err::<Position>("0-1-2,0-1-3").contains("two entries for domain 0"));
    assert!(parse_err::<Position>(&format!("{U1}:0")).contains("transaction number 0"));
}

#[test]
fn serde_as_strings() {
    let p: Position = parse(&format!("{U1}:1-5:7"));
    let json = serde_json::to_string(&p).unwrap_or_default();
    assert_eq!(json, format!("\"{U1}:1-5:7\""));
    assert_eq!(serde_json::from_str::<Position>(&json).ok(), Some(p));
    let g: Result<MariaGtid, _> = serde_json::from_str("\"0-1-x\"");
    assert!(g.is_err_and(|e| e.to_string().contains("invalid MariaDB GTID")));
    assert_eq!(
        serde_json::to_string(&parse::<FilePos>("b:4")).ok(),
        Some("\"b:4\"".into())
    );
}

/// xorshift64*; deterministic per seed.
struct Rng(u64);

impl Rng {
    fn from_env_or_time() -> Rng {
        let seed = std::env::var("DRC_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("position round-trip: DRC_SEED={seed}");
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn edge(&mut self, max: u64) -> u64 {
        match self.below(4) {
            0 => max,
            1 => self.below(3),
            _ => self.below(1000),
        }
    }
}

fn random_position(rng: &mut Rng) -> Position {
    match rng.below(3) {
        0 => {
            let mut l = MariaGtidList::new();
            for _ in 0..rng.below(4) {
                l.update(MariaGtid {
                    domain: rng.edge(u32::MAX.into()) as u32,
                    server_id: rng.edge(u32::MAX.into()) as u32,
                    seq: rng.edge(u64::MAX),
                });
            }
            Position::MariaGtid(l)
        }
        1 => {
            let mut s = MysqlGtidSet::new();
            let sids: Vec<Uuid> = (0..3)
                .map(|_| Uuid::from_u64_pair(rng.next(), rng.next()))
                .collect();
            let tags = [None, Some("a"), Some("Tag_9"), Some("_z")];
            let mut model = std::collections::BTreeSet::new();
            for _ in 0..rng.below(40) {
                let sid = sids[rng.below(3) as usize];
                let tag = tags[rng.below(4) as usize];
                let gno = 1 + rng.below(30) + if rng.below(8) == 0 { MAX_GNO - 31 } else { 0 };
                assert!(s.add(sid, tag, gno).is_ok());
                model.insert((sid, tag.map(str::to_ascii_lowercase), gno));
            }
            for (sid, tag, intervals) in s.iter() {
                for w in intervals.windows(2) {
                    assert!(w[0].1 + 1 < w[1].0, "adjacent or unsorted: {intervals:?}");
                }
                for &(a, b) in intervals {
                    assert!(a <= b);
                    assert!(model.contains(&(sid, tag.map(String::from), a)));
                }
            }
            let count: u64 = s
                .iter()
                .flat_map(|(_, _, iv)| iv)
                .map(|(a, b)| b - a + 1)
                .sum();
            assert_eq!(count, model.len() as u64);
            for (sid, tag, gno) in &model {
                assert!(s.contains(*sid, tag.as_deref(), *gno));
            }
            Position::MysqlGtid(s)
        }
        _ => {
            let alphabet = ["mysql", "bin", ".", "-", "0", "9", "_", ",", "file", U1];
            let file: String = (0..1 + rng.below(4))
                .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                .collect();
            Position::File(FilePos {
                file,
                offset: 4 + rng.edge(u64::MAX - 4),
            })
        }
    }
}

#[test]
fn randomized_round_trip() {
    let mut rng = Rng::from_env_or_time();
    for _ in 0..2000 {
        let p = random_position(&mut rng);
        let text = p.to_string();
        let back: Position = parse(&text);
        assert_eq!(back, p, "text {text:?}");
        assert_eq!(back.to_string(), text);
        let json = serde_json::to_string(&p).unwrap_or_default();
        assert_eq!(
            serde_json::from_str::<Position>(&json).ok(),
            Some(p.clone())
        );
        match &p {
            Position::MariaGtid(l) => assert_eq!(&parse::<MariaGtidList>(&l.to_string()), l),
            Position::MysqlGtid(s) => assert_eq!(&parse::<MysqlGtidSet>(&s.to_string()), s),
            Position::File(f) => assert_eq!(&parse::<FilePos>(&f.to_string()), f),
        }
    }
}

#[test]
fn covers_compares_progress() {
    let p = |s: &str| s.parse::<Position>().expect("position");
    assert!(p("0-1-10,1-2-5").covers(&p("0-1-9,1-2-5")));
    assert!(
        !p("0-1-10").covers(&p("0-1-9,1-2-5")),
        "a domain not read yet"
    );
    assert!(!p("0-1-8,1-2-5").covers(&p("0-1-9")));
    assert!(p("mariadb:").covers(&p("mariadb:")));
    let u = "3E11FA47-71CA-11E1-9E33-C80AA9429562";
    assert!(p(&format!("{u}:1-20")).covers(&p(&format!("{u}:1-20"))));
    assert!(
        !p(&format!("{u}:1-10:12-20")).covers(&p(&format!("{u}:1-20"))),
        "a gap"
    );
    assert!(p("mysql-bin.000003:400").covers(&p("mysql-bin.000003:4")));
    assert!(p("mysql-bin.000004:4").covers(&p("mysql-bin.000003:900")));
    assert!(
        !p("mysql-bin.000003:4").covers(&p("0-1-1")),
        "different kinds"
    );
}
