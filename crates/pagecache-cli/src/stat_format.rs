//! `pagecache stat --format`: the counters a mount publishes (one
//! `name value` line each, `Stats`'s `Display`) as text, Prometheus'
//! exposition format or JSON.

use std::fmt::Write as _;

use crate::CliError;

/// Output format of `pagecache stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `name value` lines, like /proc/vmstat.
    Text,
    /// Prometheus' text exposition format (`pagecache_` prefix, with
    /// `# TYPE` lines), for a node exporter's textfile collector.
    Prometheus,
    /// One JSON object of `name: value`.
    Json,
}

/// Values that are levels now rather than counts since start.
const GAUGES: &[&str] = &[
    "frames",
    "page_size",
    "nr_free",
    "nr_clean",
    "nr_dirty",
    "nr_writeback",
    "nr_unstable",
    "nr_pinned",
    "nr_inactive",
    "nr_active",
    "write_bandwidth",
    // 1 where writeback goes through io_uring, 0 on blocking threads.
    "io_uring",
    "alloc_stack_peak_bytes",
    // The mount's own: descriptors of source files open now.
    "mount_source_fds",
];

/// Parses the `name value` lines; `origin` names the file in errors.
fn parse(text: &str, origin: &str) -> Result<Vec<(String, u64)>, CliError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace();
            match (it.next(), it.next().map(str::parse::<u64>), it.next()) {
                (Some(k), Some(Ok(v)), None)
                    if k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
                {
                    Ok((k.to_string(), v))
                }
                _ => Err(CliError::Environment(format!(
                    "{origin} holds a line that is not `name value`: {l:?} \
                     (is the mount from another version of pagecache?)"
                ))),
            }
        })
        .collect()
}

/// Renders the counters read from `origin` in `format`.
pub fn render(text: &str, format: Format, origin: &str) -> Result<String, CliError> {
    let rows = parse(text, origin)?;
    let mut out = String::new();
    match format {
        Format::Text => {
            for (k, v) in &rows {
                let _ = writeln!(out, "{k} {v}");
            }
        }
        Format::Prometheus => {
            for (k, v) in &rows {
                let kind = if GAUGES.contains(&k.as_str()) {
                    "gauge"
                } else {
                    "counter"
                };
                // Prometheus counters end in `_total`.
                let name = if kind == "counter" {
                    format!("pagecache_{k}_total")
                } else {
                    format!("pagecache_{k}")
                };
                let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {v}");
            }
        }
        Format::Json => {
            let map: serde_json::Map<String, serde_json::Value> =
                rows.into_iter().map(|(k, v)| (k, v.into())).collect();
            out = serde_json::Value::Object(map).to_string();
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pagecache::{Config, MemBackend, PageCache};

    fn live_text() -> String {
        let cache = PageCache::new(Config::new(1 << 20)).unwrap();
        let f = cache.open_backend(MemBackend::new()).unwrap();
        f.write_at(&[1; 10_000], 0).unwrap();
        f.sync().unwrap();
        cache.stats().to_string()
    }

    #[test]
    fn json_holds_every_line_with_its_value() {
        let text = live_text();
        let json = render(&text, Format::Json, "t").unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let obj = v.as_object().unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(obj.len(), lines.len());
        for l in lines {
            let (k, val) = l.split_once(' ').unwrap();
            assert_eq!(obj[k].as_u64(), Some(val.parse().unwrap()), "{k}");
        }
        assert_eq!(obj["frames"].as_u64(), Some(256));
        assert_eq!(obj["pages_dirtied"].as_u64(), Some(3));
    }

    #[test]
    fn prometheus_types_every_sample() {
        let text = live_text();
        let out = render(&text, Format::Prometheus, "t").unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2 * text.lines().count());
        for pair in lines.chunks(2) {
            let ty: Vec<&str> = pair[0].split(' ').collect();
            assert_eq!(&ty[..2], ["#", "TYPE"], "{pair:?}");
            let (name, kind) = (ty[2], ty[3]);
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
            let (sample, value) = pair[1].split_once(' ').unwrap();
            assert_eq!(sample, name);
            value.parse::<u64>().unwrap();
        }
        assert!(out.contains("# TYPE pagecache_nr_dirty gauge\npagecache_nr_dirty 0\n"));
        let mount = render("mount_source_fds 7\n", Format::Prometheus, "t").unwrap();
        assert_eq!(
            mount,
            "# TYPE pagecache_mount_source_fds gauge\npagecache_mount_source_fds 7\n"
        );
        assert!(out.contains(
            "# TYPE pagecache_pages_dirtied_total counter\npagecache_pages_dirtied_total 3\n"
        ));
    }

    #[test]
    fn text_is_unchanged_and_garbage_is_refused() {
        let text = live_text();
        assert_eq!(render(&text, Format::Text, "t").unwrap(), text);
        for bad in ["frames x\n", "frames 1 2\n", "bad-name 3\n"] {
            match render(bad, Format::Json, "/m/.pagecache-stat") {
                Err(CliError::Environment(m)) => assert!(m.contains("/m/.pagecache-stat"), "{m}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
