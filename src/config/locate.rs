//! Finds the line of a dotted key (`ers.auth.mode`, `poll[1].service`) in TOML text, so
//! errors found after parsing (wrong type, failed rule) can still point at a line.
//!
//! It is a line scanner, not a parser: it tracks `[table]` and `[[array]]` headers and
//! `key = value` lines, which covers the flat layout our config files use. When it cannot
//! tell, it returns `None` and the error names the key alone.

/// One-based line of `key` in `text`, or of its nearest enclosing table header.
pub(super) fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let wanted = normalise(key);
    let mut header: Vec<String> = Vec::new();
    let mut array_counts: std::collections::HashMap<String, usize> = Default::default();
    let mut best: Option<(usize, usize)> = None; // (match length, line)
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|s| s.split("]]").next()) {
            let name = name.trim().to_string();
            let n = array_counts.entry(name.clone()).or_insert(0);
            header = name.split('.').map(|s| s.trim().to_string()).collect();
            if let Some(last) = header.last_mut() {
                *last = format!("{last}[{n}]");
            }
            *n += 1;
            consider(&mut best, &wanted, &header, i + 1);
        } else if let Some(name) = l.strip_prefix('[').and_then(|s| s.split(']').next()) {
            header = name.split('.').map(|s| s.trim().to_string()).collect();
            consider(&mut best, &wanted, &header, i + 1);
        } else if let Some((k, _)) = l.split_once('=') {
            let k = k.trim().trim_matches('"');
            if k.is_empty() || k.starts_with('#') {
                continue;
            }
            let mut path = header.clone();
            path.extend(k.split('.').map(|s| s.trim().to_string()));
            consider(&mut best, &wanted, &path, i + 1);
        }
    }
    best.map(|(_, line)| line)
}

fn normalise(key: &str) -> Vec<String> {
    // serde_path_to_error prints `poll[1].service`; keep the index on its segment.
    key.split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn consider(best: &mut Option<(usize, usize)>, wanted: &[String], path: &[String], line: usize) {
    if path.len() > wanted.len() || path.is_empty() {
        return;
    }
    if wanted[..path.len()] != *path {
        return;
    }
    if best.is_none_or(|(len, _)| path.len() > len) {
        *best = Some((path.len(), line));
    }
}
