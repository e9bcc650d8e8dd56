//! What cron accepts in a schedule, checked the same way by `mop validate` and by the agent
//! (after rendering), so a crontab mop writes is never one that `crontab` refuses or, worse,
//! accepts and never runs as meant.
//!
//! The grammar is the common subset of Vixie cron (Debian's `cron`) and cronie: `*`, numbers,
//! ranges `a-b` (with `a <= b`), steps after `*` or a range, comma lists, and month or weekday
//! names (`jan`, `mon`) only on their own, since Vixie cron allows no names in ranges or lists.

/// The `@` schedules cron knows (`special = "@daily"`).
pub const CRON_SPECIALS: &[&str] = &[
    "@reboot",
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// The five schedule fields of a crontab line, in order, with their bounds and names.
pub const CRON_FIELDS: &[CronField] = &[
    CronField {
        name: "minute",
        low: 0,
        high: 59,
        names: &[],
    },
    CronField {
        name: "hour",
        low: 0,
        high: 23,
        names: &[],
    },
    CronField {
        name: "day",
        low: 1,
        high: 31,
        names: &[],
    },
    CronField {
        name: "month",
        low: 1,
        high: 12,
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    },
    CronField {
        name: "weekday",
        low: 0,
        high: 7,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    },
];

/// One schedule field: the values it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CronField {
    pub name: &'static str,
    pub low: u32,
    pub high: u32,
    /// Names cron accepts for single values (lowercase; cron ignores case).
    pub names: &'static [&'static str],
}

/// The field called `name` (`minute`...).
pub fn cron_field(name: &str) -> Option<&'static CronField> {
    CRON_FIELDS.iter().find(|field| field.name == name)
}

impl CronField {
    /// Why cron would reject `text` in this field, or `None` when it is valid.
    pub fn problem(&self, text: &str) -> Option<String> {
        let bounds = format!(
            "`{}` takes `*`, numbers {}-{}, ranges (`1-5`), steps (`*/10`) and lists (`1,15`)",
            self.name, self.low, self.high
        );
        if text.is_empty() {
            return Some(format!("`{}` is empty", self.name));
        }
        if self.names.contains(&text.to_ascii_lowercase().as_str()) {
            return None;
        }
        for item in text.split(',') {
            if let Some(problem) = self.item_problem(item) {
                let names = if self.names.is_empty() {
                    String::new()
                } else {
                    format!(", or one name such as `{}`", self.names[0])
                };
                return Some(format!(
                    "invalid {} `{text}`: {problem}\nhint: {bounds}{names}",
                    self.name
                ));
            }
        }
        None
    }

    fn item_problem(&self, item: &str) -> Option<String> {
        self.check_item(item).err()
    }

    fn check_item(&self, item: &str) -> Result<(), String> {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(step) if step >= 1 => {}
                _ => return Err(format!("`{step}` is not a step (a number from 1)")),
            }
        }
        if range == "*" {
            return Ok(());
        }
        let (first, last) = match range.split_once('-') {
            Some((first, last)) => (first, Some(last)),
            None => (range, None),
        };
        if let (None, Some(step)) = (last, step) {
            return Err(format!(
                "a step needs `*` or a range before it, as in `*/{step}`"
            ));
        }
        let first = self.number(first)?;
        if let Some(last) = last {
            let last = self.number(last)?;
            if first > last {
                return Err(format!("the range `{range}` runs backwards"));
            }
        }
        Ok(())
    }

    fn number(&self, text: &str) -> Result<u32, String> {
        match text.parse::<u32>() {
            Ok(value) if (self.low..=self.high).contains(&value) => Ok(value),
            Ok(value) => Err(format!(
                "{value} is out of range ({}-{})",
                self.low, self.high
            )),
            Err(_) => Err(format!("`{text}` is not a number")),
        }
    }
}

/// Why `text` cannot be a cron special schedule, or `None`.
pub fn cron_special_problem(text: &str) -> Option<String> {
    if CRON_SPECIALS.contains(&text) {
        return None;
    }
    Some(format!(
        "invalid special schedule `{text}`\nhint: `special` is one of {}",
        CRON_SPECIALS
            .iter()
            .map(|special| format!("`{special}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Why `name` cannot name an environment variable in a crontab, or `None`.
pub fn cron_env_name_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    (!valid).then(|| {
        format!("invalid environment variable name `{name}`: use letters, digits and `_`, not starting with a digit")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(field: &str, text: &str, valid: bool) {
        let problem = cron_field(field).expect("known field").problem(text);
        assert_eq!(problem.is_none(), valid, "{field} `{text}`: {problem:?}");
    }

    #[test]
    fn accepts_what_cron_accepts() {
        for text in ["*", "0", "59", "*/5", "0-30/10", "1,15,30", "0-5,10-20/2"] {
            check("minute", text, true);
        }
        check("hour", "23", true);
        check("day", "1-31", true);
        check("month", "Jan", true);
        check("month", "12", true);
        check("weekday", "7", true);
        check("weekday", "mon", true);
    }

    #[test]
    fn rejects_what_cron_rejects() {
        for text in [
            "", "60", "-1", "*/0", "5/10", "30-10", "a", "1,,2", "* *", "1-",
        ] {
            check("minute", text, false);
        }
        check("hour", "24", false);
        check("day", "0", false);
        check("month", "13", false);
        check("month", "jan-mar", false);
        check("weekday", "8", false);
        let message = cron_field("hour")
            .expect("known")
            .problem("25")
            .expect("invalid");
        assert!(
            message.starts_with("invalid hour `25`: 25 is out of range (0-23)"),
            "{message}"
        );
        assert!(cron_special_problem("@daily").is_none());
        assert!(cron_special_problem("@often").is_some());
        assert!(cron_env_name_problem("MAILTO").is_none());
        assert!(cron_env_name_problem("1X").is_some());
        assert!(cron_env_name_problem("A B").is_some());
    }
}
