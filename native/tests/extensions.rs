//! The extensions, dictionaries and encoding conversions bundled with the runtime: listed, created, used, kept across a restart.

mod support;
use support::*;

fn one(port: &mut Port, sql: &str) -> String {
    port.rows(sql)[0][0].clone().expect("a value")
}

/// Every bundled extension that CREATE EXTENSION installs (auto_explain is a library
/// one LOADs instead).
const CREATABLE: &[&str] = &[
    "age", "amcheck", "bloom", "btree_gin", "btree_gist", "citext", "cube", "dict_int", "dict_xsyn", "earthdistance",
    "file_fdw", "fuzzystrmatch", "hstore", "intarray", "isn", "lo", "ltree", "pageinspect", "pg_buffercache",
    "pg_freespacemap", "pg_hashids", "pg_ivm", "pg_surgery", "pg_textsearch", "pg_trgm", "pg_uuidv7", "pg_visibility",
    "pg_walinspect", "pgtap", "seg", "tablefunc", "tcn", "tsm_system_rows", "tsm_system_time", "unaccent", "vector",
];

#[test]
fn every_bundled_extension_is_listed_and_can_be_created() {
    let (mut port, _) = Port::ready("memory://");
    let listed: Vec<String> =
        port.rows("SELECT name FROM pg_available_extensions ORDER BY 1").into_iter().map(|r| r[0].clone().unwrap()).collect();
    for name in CREATABLE {
        assert!(listed.iter().any(|l| l == name), "{name} is not in pg_available_extensions: {listed:?}");
        port.rows(&format!("CREATE EXTENSION IF NOT EXISTS \"{name}\" CASCADE"));
    }
    port.rows("LOAD 'auto_explain'");
    let installed = one(&mut port, "SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql'");
    assert_eq!(installed, CREATABLE.len().to_string());

    // An unknown one is a clear error, and the session goes on.
    let reply = port.simple("CREATE EXTENSION no_such_thing");
    let error = reply.iter().find(|m| m.tag == b'E').expect("an error");
    assert_eq!(error.field(b'C').as_deref(), Some("0A000"));
    assert_eq!(one(&mut port, "SELECT 1"), "1");
    assert_eq!(port.finish().0, 0);
}

#[test]
fn vector_trgm_hstore_citext_ltree_and_pgtap_work_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = dir_arg(&tmp.path().join("db"));
    let (mut port, _) = Port::ready(&dir);
    for name in ["vector", "pg_trgm", "hstore", "citext", "ltree", "pgtap"] {
        port.rows(&format!("CREATE EXTENSION {name}"));
    }
    port.rows("CREATE TABLE items (id int PRIMARY KEY, embedding vector(3))");
    port.rows("INSERT INTO items SELECT i, ARRAY[i, i * 2, 100 - i]::vector FROM generate_series(1, 200) i");
    port.rows("CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)");
    port.rows("CREATE TABLE words (w text)");
    port.rows("INSERT INTO words VALUES ('postgres'), ('postgis'), ('elixir')");
    port.rows("CREATE INDEX ON words USING gin (w gin_trgm_ops)");
    assert_eq!(port.finish().0, 0);

    let (mut port, _) = Port::ready(&dir);
    port.rows("SET enable_seqscan = off");
    let plan = port.rows("EXPLAIN SELECT id FROM items ORDER BY embedding <-> '[10,20,90.4]' LIMIT 3");
    assert!(format!("{plan:?}").contains("items_embedding_idx"), "the nearest-neighbour query uses the index: {plan:?}");
    let nearest = port.rows("SELECT id FROM items ORDER BY embedding <-> '[10,20,90.4]' LIMIT 3");
    assert_eq!(nearest, vec![vec![Some("10".into())], vec![Some("9".into())], vec![Some("11".into())]]);
    assert_eq!(one(&mut port, "SELECT w FROM words ORDER BY similarity(w, 'postgress') DESC LIMIT 1"), "postgres");
    assert_eq!(one(&mut port, "SELECT ('a=>1, b=>2'::hstore) -> 'b'"), "2");
    assert_eq!(one(&mut port, "SELECT 'Hello'::citext = 'hELLO'::citext"), "t");
    assert_eq!(one(&mut port, "SELECT 'top.science.astronomy'::ltree <@ 'top.science'"), "t");
    let tap = port.rows("SELECT * FROM (SELECT plan(3) UNION ALL SELECT ok(true, 'truth') UNION ALL SELECT is(1 + 1, 2, 'sums') UNION ALL SELECT has_table('items')) t");
    let tap: Vec<String> = tap.into_iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(tap, vec!["1..3", "ok 1 - truth", "ok 2 - sums", "ok 3 - Table items should exist"]);
    assert_eq!(port.finish().0, 0);
}

/// Snowball's stop-word lists ship with the port (the runtime lacks them): every
/// language configuration with stop words stems and drops them as on a server.
#[test]
fn full_text_search_in_every_snowball_language_with_stop_words() {
    let (mut port, _) = Port::ready("memory://");
    assert_eq!(
        one(&mut port, "SELECT to_tsvector('english', 'The quick brown foxes jumped over the lazy dogs')::text"),
        "'brown':3 'dog':9 'fox':4 'jump':5 'lazi':8 'quick':2"
    );
    assert_eq!(one(&mut port, "SELECT to_tsvector('german', 'Die Katzen und der Hund')::text"), "'hund':5 'katz':2");
    assert_eq!(
        one(&mut port, "SELECT to_tsvector('english', 'PostgreSQL databases') @@ to_tsquery('english', 'database')"),
        "t"
    );
    // Every dictionary that names a stop-word file can read it.
    let dictionaries = port.rows("SELECT dictname FROM pg_ts_dict WHERE dictinitoption LIKE '%stopwords%' ORDER BY 1");
    assert_eq!(dictionaries.len(), 15, "{dictionaries:?}");
    for row in dictionaries {
        let name = row[0].clone().unwrap();
        let reply = port.simple(&format!("SELECT ts_lexize('{name}', 'a')"));
        assert!(reply.iter().all(|m| m.tag != b'E'), "{name}: {reply:?}");
    }
    assert_eq!(port.finish().0, 0);
}

#[test]
fn every_default_encoding_conversion_loads_and_converts() {
    let (mut port, _) = Port::ready("memory://");
    let conversions = port.rows(
        "SELECT pg_encoding_to_char(conforencoding), pg_encoding_to_char(contoencoding) FROM pg_conversion \
         WHERE condefault ORDER BY 1, 2",
    );
    assert!(conversions.len() > 100, "PostgreSQL 17 has 132 default conversions: {conversions:?}");
    for row in &conversions {
        let (from, to) = (row[0].clone().unwrap(), row[1].clone().unwrap());
        // Each call loads the conversion's module and runs its procedure.
        let sql = format!("SELECT encode(convert('\\x41'::bytea, '{from}', '{to}'), 'hex')");
        assert_eq!(port.rows(&sql)[0][0].as_deref(), Some("41"), "{from} to {to}");
    }
    assert_eq!(one(&mut port, "SELECT encode(convert_to('日本語', 'SJIS'), 'hex')"), "93fa967b8cea");
    assert_eq!(one(&mut port, "SELECT convert_from('\\xe9'::bytea, 'LATIN1')"), "é");

    // A client encoding: text goes out in it; a character it lacks is 22P05.
    port.rows("SET client_encoding TO 'LATIN1'");
    let reply = port.simple("SELECT convert_from('\\xc3a9', 'UTF8')");
    let row = reply.iter().find(|m| m.tag == b'D').expect("a row");
    assert!(row.body.ends_with(&[0, 0, 0, 1, 0xE9]), "é in LATIN1 is the one byte 0xE9: {:?}", row.body);
    let reply = port.simple("SELECT convert_from('\\xe282ac', 'UTF8')");
    let error = reply.iter().find(|m| m.tag == b'E').expect("an error");
    assert_eq!(error.field(b'C').as_deref(), Some("22P05"));
    assert_eq!(port.finish().0, 0);
}
