//! The RDB object decoder against real servers: Redis 6.2 (RDB 9), Redis 7.0 (RDB 10) and
//! Valkey 9.1 (VALKEY080) write every encoding, `SAVE`, and the decoded RDB must equal what
//! the server itself answers, key by key. With `GEORELAY_RDB_CORPUS_OUT=<dir>` the RDBs are
//! also copied there (how `fuzz/make-corpus.sh` makes the `rdb_objects` seeds).

#[path = "apply/dataset.rs"]
mod dataset;
mod support;

use georelay::rdb::objects::{Item, RdbDecoder};
use support::{Redis, ServerKind};

fn decode_file(rdb: &[u8], chunk: usize) -> (Vec<Item>, Vec<georelay::rdb::objects::Entry>) {
    let mut d = RdbDecoder::new();
    let mut items = Vec::new();
    for part in rdb.chunks(chunk) {
        d.feed(part);
        while let Some(item) = d.next_item().expect("decode") {
            items.push(item);
        }
    }
    while let Some(item) = d.finish_item().expect("decode at end") {
        items.push(item);
    }
    let entries = items
        .iter()
        .filter_map(|i| match i {
            Item::Key(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    (items, entries)
}

fn check(kind: ServerKind) {
    // Small listpack limits off their defaults are not needed: the dataset has small and
    // large objects of each type.
    let server = Redis::start_kind(kind, &["--rdbcompression", "yes"]);
    let mut c = server.client();
    dataset::populate(&mut c, kind, "t");
    assert_eq!(support::frame_text(&c.cmd(&["SAVE"])), "OK");
    let rdb = std::fs::read(server.dir.path().join("dump.rdb")).expect("dump.rdb");
    if let Ok(dir) = std::env::var("GEORELAY_RDB_CORPUS_OUT") {
        let name = match kind {
            ServerKind::Redis62 => "seed-redis62.rdb",
            ServerKind::Redis70 => "seed-redis70.rdb",
            ServerKind::Valkey91 => "seed-valkey91.rdb",
        };
        std::fs::write(std::path::Path::new(&dir).join(name), &rdb).expect("write corpus seed");
    }
    let (items, entries) = decode_file(&rdb, rdb.len());
    for chunk in [1, 13, 4096] {
        assert_eq!(decode_file(&rdb, chunk).0, items, "chunk {chunk}");
    }
    assert_eq!(
        items.last(),
        Some(&Item::End {
            checksum_ok: Some(true)
        })
    );
    let want = dataset::read_server(&mut c, &[0, 2], kind == ServerKind::Valkey91);
    let got = dataset::from_entries(&entries);
    assert_eq!(
        want.len(),
        18 + 2 + usize::from(kind == ServerKind::Valkey91)
    );
    dataset::assert_same(&want, &got, 2000);
    let functions = items
        .iter()
        .filter(|i| matches!(i, Item::Function { code } if code.starts_with(b"#!lua name=tlib")))
        .count();
    assert_eq!(functions, usize::from(kind != ServerKind::Redis62));
    // The types the dataset must have produced, per release.
    let mut types: Vec<u8> = entries.iter().map(|e| e.rdb_type).collect();
    types.sort();
    types.dedup();
    let want_types: &[u8] = match kind {
        ServerKind::Redis62 => &[0, 2, 4, 5, 11, 12, 13, 14, 15],
        ServerKind::Redis70 => &[0, 2, 4, 5, 11, 16, 17, 18, 19],
        ServerKind::Valkey91 => &[0, 2, 4, 5, 11, 16, 17, 18, 20, 21, 22],
    };
    eprintln!(
        "{}: {} keys, types {types:?}, {} RDB bytes",
        kind.name(),
        entries.len(),
        rdb.len()
    );
    assert_eq!(types, want_types, "{}", kind.name());
}

#[test]
fn redis62_rdb9_decodes_to_what_the_server_holds() {
    check(ServerKind::Redis62);
}

#[test]
fn redis70_rdb10_decodes_to_what_the_server_holds() {
    check(ServerKind::Redis70);
}

#[test]
fn valkey91_rdb80_decodes_to_what_the_server_holds() {
    check(ServerKind::Valkey91);
}
