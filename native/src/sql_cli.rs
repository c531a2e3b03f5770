//! `--sql`: run statements on the configured data directory and print each result as
//! a table (or its command tag, or its error with SQLSTATE), like psql's aligned output.

use std::fmt::Write;

use crate::wire;

/// Renders a backend reply to text; returns it and whether any statement failed.
pub fn render(reply: &[u8]) -> (String, bool) {
    let mut out = String::new();
    let mut failed = false;
    let mut columns: Vec<String> = Vec::new();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (tag, body) in wire::messages(reply) {
        match tag {
            b'T' => {
                columns = row_description(body);
                rows.clear();
            }
            b'D' => rows.push(data_row(body)),
            b'C' => {
                let command = String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(body)).into_owned();
                if columns.is_empty() {
                    let _ = writeln!(out, "{command}");
                } else {
                    table(&mut out, &columns, &rows);
                }
                columns.clear();
                rows.clear();
            }
            b'E' | b'N' => {
                let _ = writeln!(out, "{}", wire::describe_error(body));
                failed |= tag == b'E';
            }
            _ => {}
        }
    }
    (out, failed)
}

fn row_description(body: &[u8]) -> Vec<String> {
    let count = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut rest = &body[2..];
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        names.push(String::from_utf8_lossy(&rest[..end]).into_owned());
        // name NUL, then table oid, column, type oid, size, modifier, format: 18 bytes.
        rest = rest.get(end + 1 + 18..).unwrap_or(&[]);
    }
    names
}

fn data_row(body: &[u8]) -> Vec<String> {
    let count = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut rest = &body[2..];
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        rest = &rest[4..];
        if len < 0 {
            values.push(String::new());
        } else {
            let (value, tail) = rest.split_at(len as usize);
            values.push(String::from_utf8_lossy(value).into_owned());
            rest = tail;
        }
    }
    values
}

fn table(out: &mut String, columns: &[String], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([columns[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        cells.iter().zip(&widths).map(|(c, w)| format!(" {c:<w$} ")).collect::<Vec<_>>().join("|")
    };
    let _ = writeln!(out, "{}", line(columns).trim_end());
    let _ = writeln!(out, "{}", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
    for row in rows {
        let _ = writeln!(out, "{}", line(row).trim_end());
    }
    let _ = writeln!(out, "({} row{})", rows.len(), if rows.len() == 1 { "" } else { "s" });
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::message;

    #[test]
    fn renders_rows_and_errors() {
        let mut reply = Vec::new();
        let mut t = vec![0, 2];
        for name in ["id", "name"] {
            t.extend_from_slice(name.as_bytes());
            t.push(0);
            t.extend_from_slice(&[0; 18]);
        }
        reply.extend(message(b'T', &t));
        let mut d = vec![0, 2];
        d.extend_from_slice(&1i32.to_be_bytes());
        d.push(b'7');
        d.extend_from_slice(&(-1i32).to_be_bytes());
        reply.extend(message(b'D', &d));
        reply.extend(message(b'C', b"SELECT 1\0"));
        reply.extend(wire::error_response("42P01", "relation \"nope\" does not exist"));
        let (text, failed) = render(&reply);
        assert!(failed);
        assert!(text.contains(" id | name"), "{text}");
        assert!(text.contains(" 7  |"), "{text}");
        assert!(text.contains("(1 row)"), "{text}");
        assert!(text.contains("SQLSTATE 42P01"), "{text}");
    }
}
