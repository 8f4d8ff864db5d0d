//! `pagecache stat`: a running mount's counters.

use std::path::Path;

use super::inode::STAT_NAME;
use super::StatArgs;
use crate::CliError;

/// Whether `path` is a mount point of a `pagecache` filesystem, per
/// /proc/self/mountinfo.
fn is_pagecache_mount(path: &Path) -> Option<bool> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_str()?;
    Some(info.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            return false;
        };
        fields.get(4).map(|m| unescape(m)) == Some(want.to_string())
            && fields.get(sep + 1) == Some(&"fuse.pagecache")
    }))
}

/// Undoes the octal escapes of mountinfo (`\040` for space…).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if let Some(v) = b
                .get(i + 1..i + 4)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| u8::from_str_radix(d, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Prints a mount's counters.
pub fn stat(args: StatArgs) -> Result<(), CliError> {
    let shown = args.mountpoint.display();
    // The mount point of another user's mount cannot even be looked at;
    // mountinfo still tells whether it is a pagecache mount.
    let mountpoint = match std::fs::canonicalize(&args.mountpoint) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            std::path::absolute(&args.mountpoint)
                .map_err(|e| CliError::io("cannot use", Some(args.mountpoint.clone()), e))?
        }
        Err(e) => return Err(CliError::io("cannot use", Some(args.mountpoint.clone()), e)),
    };
    if is_pagecache_mount(&mountpoint) == Some(false) {
        return Err(CliError::Usage(format!(
            "{shown} is not a pagecache mount (start one with `pagecache mount SOURCE_DIR {shown}`)"
        )));
    }
    let path = mountpoint.join(STAT_NAME);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            CliError::Environment(format!(
                "permission denied reading {} (mounted by another user? a mount \
                 started with --allow-other can be read by every user)",
                path.display()
            ))
        } else {
            CliError::Environment(format!(
                "{shown} is not a pagecache mount: cannot read {}: {e}",
                path.display()
            ))
        }
    })?;
    if !text.starts_with("frames ") {
        return Err(CliError::Environment(format!(
            "{shown} is not a pagecache mount: {} does not hold counters",
            path.display()
        )));
    }
    let origin = path.display().to_string();
    print!(
        "{}",
        crate::stat_format::render(&text, args.format, &origin)?
    );
    Ok(())
}
