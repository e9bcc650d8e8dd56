//! Ansible host patterns: `web[01:20].example.com` ranges and a `host:port` suffix.

use crate::value::Problem;

/// More hosts than this from one pattern is a typo (`[1:100000]`), not an inventory.
pub(crate) const MAX_RANGE_HOSTS: usize = 10_000;

/// Expands every `[start:end]` or `[start:end:step]` range of a host pattern, as Ansible's
/// `expand_hostname_range` does: numeric ranges keep the width of a start with leading zeros
/// (`[01:03]` gives `01`, `02`, `03`), letter ranges run `[a:c]`, several ranges multiply.
pub(crate) fn expand_host_pattern(pattern: &str) -> Result<Vec<String>, Problem> {
    let Some(open) = pattern.find('[') else {
        if pattern.contains(']') {
            return Err(unbalanced(pattern));
        }
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|offset| open + offset)
        .ok_or_else(|| unbalanced(pattern))?;
    let (head, range, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let items = expand_range(pattern, range)?;
    let tails = expand_host_pattern(tail)?;
    if items.len().saturating_mul(tails.len()) > MAX_RANGE_HOSTS {
        return Err(Problem::with_hint(
            format!("host pattern `{pattern}` gives more than {MAX_RANGE_HOSTS} hosts"),
            "split the range, or check its bounds",
        ));
    }
    let mut hosts = Vec::with_capacity(items.len() * tails.len());
    for item in &items {
        for tail in &tails {
            hosts.push(format!("{head}{item}{tail}"));
        }
    }
    Ok(hosts)
}

fn unbalanced(pattern: &str) -> Problem {
    Problem::with_hint(
        format!("host pattern `{pattern}` has an unbalanced `[` or `]`"),
        "write a range as `web[01:20].example.com` or `db-[a:f]`",
    )
}

fn expand_range(pattern: &str, range: &str) -> Result<Vec<String>, Problem> {
    let bad = |why: &str| {
        Problem::with_hint(
            format!("invalid range `[{range}]` in host pattern `{pattern}`: {why}"),
            "write `[START:END]` or `[START:END:STEP]`: numbers (`[01:20]`) or single letters \
             (`[a:f]`)",
        )
    };
    let parts: Vec<&str> = range.split(':').collect();
    let (start, end, step) = match parts.as_slice() {
        [start, end] => (*start, *end, 1),
        [start, end, step] => {
            let step: usize = step
                .parse()
                .map_err(|_| bad("the step must be a positive number"))?;
            (*start, *end, step)
        }
        _ => return Err(bad("expected `START:END`")),
    };
    if step == 0 {
        return Err(bad("the step must be a positive number"));
    }
    let letter = |text: &str| {
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_alphabetic() => Some(c),
            _ => None,
        }
    };
    // `[:5]` is `[0:5]` in Ansible.
    let start = if start.is_empty() { "0" } else { start };
    if let (Some(first), Some(last)) = (letter(start), letter(end)) {
        if first > last {
            return Err(bad("the start is after the end"));
        }
        return Ok((first..=last)
            .step_by(step)
            .map(|c| c.to_string())
            .collect());
    }
    let numeric = |text: &str| !text.is_empty() && text.chars().all(|c| c.is_ascii_digit());
    if !numeric(start) || !numeric(end) {
        return Err(bad(
            "the bounds must be both numbers or both single letters",
        ));
    }
    let first: u64 = start.parse().map_err(|_| bad("the start is too large"))?;
    let last: u64 = end.parse().map_err(|_| bad("the end is too large"))?;
    if first > last {
        return Err(bad("the start is after the end"));
    }
    if (last - first) / step as u64 >= MAX_RANGE_HOSTS as u64 {
        return Err(Problem::with_hint(
            format!("host pattern `{pattern}` gives more than {MAX_RANGE_HOSTS} hosts"),
            "split the range, or check its bounds",
        ));
    }
    let width = if start.len() > 1 && start.starts_with('0') {
        start.len()
    } else {
        0
    };
    Ok((first..=last)
        .step_by(step)
        .map(|number| format!("{number:0width$}"))
        .collect())
}

/// Splits Ansible's `host:port` (`web1.example.com:2222`, `web[01:03]:2222`) at the one `:`
/// outside brackets. A name with more than one such `:` is an IPv6 address and has no port;
/// `[2001:db8::1]:2222` is one with a port.
pub(crate) fn split_host_port(text: &str) -> Result<(&str, Option<&str>), Problem> {
    let mut depth = 0usize;
    let mut colons = Vec::new();
    for (index, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => colons.push(index),
            _ => {}
        }
    }
    let [colon] = colons.as_slice() else {
        return Ok((text, None));
    };
    let (host, port) = (&text[..*colon], &text[colon + 1..]);
    if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
        return Err(Problem::with_hint(
            format!("invalid port `{port}` in host `{text}`"),
            "write `HOST:PORT` with a number, or set `ansible_port`",
        ));
    }
    let host = match host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
    {
        Some(inner) if inner.contains(':') => inner,
        _ => host,
    };
    Ok((host, Some(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, expected: &[&str]) {
        let hosts = expand_host_pattern(pattern).unwrap_or_else(|p| panic!("{}", p.message));
        assert_eq!(hosts, expected, "{pattern}");
    }

    #[test]
    fn ranges_expand_as_ansible_does() {
        check("web1", &["web1"]);
        check("web[1:3]", &["web1", "web2", "web3"]);
        check(
            "web[01:03].example.com",
            &[
                "web01.example.com",
                "web02.example.com",
                "web03.example.com",
            ],
        );
        check("web[08:10]", &["web08", "web09", "web10"]);
        check("db-[a:c]", &["db-a", "db-b", "db-c"]);
        check("h[0:6:3]", &["h0", "h3", "h6"]);
        check("r[1:2]n[a:b]", &["r1na", "r1nb", "r2na", "r2nb"]);
        check("x[:2]", &["x0", "x1", "x2"]);
    }

    #[test]
    fn broken_ranges_are_refused() {
        for pattern in [
            "web[3:1]",
            "web[1:",
            "web1]",
            "web[a:3]",
            "web[1:2:0]",
            "web[1-3]",
            "web[1:100000]",
        ] {
            assert!(expand_host_pattern(pattern).is_err(), "{pattern}");
        }
    }

    #[test]
    fn ports_split_off() {
        assert_eq!(
            split_host_port("web1:2222").ok(),
            Some(("web1", Some("2222")))
        );
        assert_eq!(split_host_port("web1").ok(), Some(("web1", None)));
        assert_eq!(
            split_host_port("2001:db8::1").ok(),
            Some(("2001:db8::1", None))
        );
        assert_eq!(
            split_host_port("[2001:db8::1]:22").ok(),
            Some(("2001:db8::1", Some("22")))
        );
        assert_eq!(
            split_host_port("web[01:03]:2222").ok(),
            Some(("web[01:03]", Some("2222")))
        );
        assert!(split_host_port("web1:ssh").is_err());
    }
}
