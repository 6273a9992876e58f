//! Five-field cron read as crontab(5) reads it, then handed to the `cron` crate as lists.
//!
//! The crate numbers days of the week 1 = Sunday to 7 = Saturday and requires both the day
//! of month and the day of week to match. Classic cron numbers them 0 (or 7) = Sunday to
//! 6 = Saturday, and fires when *either* day field matches if both are restricted (neither
//! starts with `*`). Passing a five-field expression to the crate as it stands would make
//! `0 2 * * 1-5` fire Sunday to Thursday and `0 0 1 * MON` only on Mondays that are the
//! 1st, silently. So the five fields are parsed here, every problem of every field is
//! reported at once in the operator's own terms, and the crate gets explicit lists (days
//! by name) it cannot misread: one expression, or two whose fires are merged for the
//! "either day" rule.

use std::collections::BTreeSet;

/// One field of a crontab line: its name as told to operators, its range, its names.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Full names, the first for `min`; a name is written as its first three letters or
    /// more (`MON`, `Tues`, `monday`), any case.
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ],
};
/// 0 to 7, both ends Sunday, as in crontab(5).
const DAY_OF_WEEK: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    names: &[
        "sunday",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
    ],
};

/// Day names for the crate, indexed by classic number modulo 7.
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A five-field expression as the `cron` crate's six-field expressions (seconds first)
/// whose fire times, merged, are the classic expression's: one, or two when both day
/// fields are restricted. Every problem found, in words, when it is not valid.
pub(super) fn translate(expr: &str) -> Result<Vec<String>, Vec<String>> {
    let parts: Vec<&str> = expr.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = parts[..] else {
        return Err(vec![format!(
            "has {} fields; a five-field expression is minute hour day-of-month month day-of-week",
            parts.len()
        )]);
    };
    let mut problems = Vec::new();
    let mut list = |field: &Field, text: &str| match parse(field, text) {
        Ok(set) => Some(set),
        Err(mut found) => {
            problems.append(&mut found);
            None
        }
    };
    let fields = (
        list(&MINUTE, minute),
        list(&HOUR, hour),
        list(&DAY_OF_MONTH, dom),
        list(&MONTH, month),
        list(&DAY_OF_WEEK, dow),
    );
    let (Some(minutes), Some(hours), Some(doms), Some(months), Some(dows)) = fields else {
        return Err(problems);
    };
    let numbers = |field: &str, set: &Option<BTreeSet<u32>>| match set {
        None => "*".to_string(),
        Some(_) if is_unrestricted(field) => "*".to_string(),
        Some(set) => join(set.iter().map(u32::to_string)),
    };
    let minutes = numbers(minute, &minutes);
    let hours = numbers(hour, &hours);
    let months = numbers(month, &months);
    let doms_list = numbers(dom, &doms);
    let dows_list = match &dows {
        Some(set) if !is_unrestricted(dow) => {
            let days: BTreeSet<usize> = set.iter().map(|d| (*d % 7) as usize).collect();
            join(days.into_iter().map(|d| DAY_NAMES[d].to_string()))
        }
        _ => "*".to_string(),
    };
    let base = format!("0 {minutes} {hours}");
    // crontab(5): "If both fields are restricted (i.e., do not begin with *), the command
    // will be run when either field matches the current time."
    if dom.starts_with('*') || dow.starts_with('*') || dom == "?" || dow == "?" {
        Ok(vec![format!("{base} {doms_list} {months} {dows_list}")])
    } else {
        Ok(vec![
            format!("{base} {doms_list} {months} *"),
            format!("{base} * {months} {dows_list}"),
        ])
    }
}

/// `*` (or `?`, which the crate accepted before this reading and earlier policies may use).
fn is_unrestricted(text: &str) -> bool {
    text == "*" || text == "?"
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(",")
}

/// The values a field's text selects (`None`: every value), or every problem in it.
fn parse(field: &Field, text: &str) -> Result<Option<BTreeSet<u32>>, Vec<String>> {
    if is_unrestricted(text) {
        if text == "?" && field.name != DAY_OF_MONTH.name && field.name != DAY_OF_WEEK.name {
            return Err(vec![format!(
                "{}: \"?\" is only allowed for the day of month or the day of week",
                field.name
            )]);
        }
        return Ok(None);
    }
    let mut set = BTreeSet::new();
    let mut problems = Vec::new();
    for item in text.split(',') {
        match item_values(field, item) {
            Ok(values) => set.extend(values),
            Err(problem) => problems.push(format!("{}: {problem}", field.name)),
        }
    }
    if problems.is_empty() {
        Ok(Some(set))
    } else {
        Err(problems)
    }
}

/// One comma-separated item: `*`, `N`, `N-M`, each optionally `/STEP`; `N/STEP` runs to the
/// field's end.
fn item_values(field: &Field, item: &str) -> Result<Vec<u32>, String> {
    if item.is_empty() {
        return Err("an empty item in a list (two commas, or a comma at an end)".into());
    }
    let (range, step) = match item.split_once('/') {
        None => (item, None),
        Some((range, step)) => match step.parse::<u32>() {
            Ok(0) => return Err(format!("step 0 in {item:?}: a step must be at least 1")),
            Ok(step) => (range, Some(step)),
            Err(_) => return Err(format!("{step:?} in {item:?} is not a step (a number)")),
        },
    };
    let (low, high) = if range == "*" {
        (field.min, field.max)
    } else if let Some((low, high)) = range.split_once('-') {
        let (low, high) = (value(field, low)?, value(field, high)?);
        if low > high {
            return Err(format!(
                "{item:?} runs backwards; write it as two ranges ({low}-{max},{min}-{high})",
                max = field.max,
                min = field.min
            ));
        }
        (low, high)
    } else {
        let low = value(field, range)?;
        (low, if step.is_some() { field.max } else { low })
    };
    let step = step.unwrap_or(1) as usize;
    Ok((low..=high).step_by(step).collect())
}

/// A number in the field's range, or one of its names (any case).
fn value(field: &Field, text: &str) -> Result<u32, String> {
    if let Ok(n) = text.parse::<u32>() {
        return if (field.min..=field.max).contains(&n) {
            Ok(n)
        } else {
            Err(format!(
                "{n} is out of range {}-{}{}",
                field.min,
                field.max,
                hint(field)
            ))
        };
    }
    if let Some(i) = field
        .names
        .iter()
        .position(|name| text.len() >= 3 && name.starts_with(&text.to_ascii_lowercase()))
    {
        return Ok(field.min + i as u32);
    }
    Err(format!(
        "{text:?} is not a number{}",
        if field.names.is_empty() {
            String::new()
        } else {
            format!(
                " or a name ({}-{})",
                field.names[0][..3].to_ascii_uppercase(),
                field.names[field.names.len() - 1][..3].to_ascii_uppercase()
            )
        }
    ))
}

fn hint(field: &Field) -> &'static str {
    if field.name == DAY_OF_WEEK.name {
        " (0 and 7 are Sunday)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(expr: &str) -> Vec<String> {
        translate(expr).unwrap_or_else(|e| panic!("{expr}: {e:?}"))
    }

    #[test]
    fn days_of_week_are_numbered_from_sunday_zero() {
        assert_eq!(ok("0 2 * * 1-5"), ["0 0 2 * * MON,TUE,WED,THU,FRI"]);
        assert_eq!(ok("0 2 * * 0"), ["0 0 2 * * SUN"]);
        assert_eq!(ok("0 2 * * 7"), ["0 0 2 * * SUN"]);
        assert_eq!(ok("0 2 * * 5-7"), ["0 0 2 * * SUN,FRI,SAT"]);
        assert_eq!(ok("0 2 * * */2"), ["0 0 2 * * SUN,TUE,THU,SAT"]);
        assert_eq!(ok("0 2 * * mon-fri"), ["0 0 2 * * MON,TUE,WED,THU,FRI"]);
        assert_eq!(ok("0 2 * * Sat,0"), ["0 0 2 * * SUN,SAT"]);
        assert_eq!(ok("0 2 * * Tues-thursday"), ["0 0 2 * * TUE,WED,THU"]);
    }

    #[test]
    fn both_day_fields_restricted_means_either() {
        assert_eq!(ok("30 4 1,15 * 5"), ["0 30 4 1,15 * *", "0 30 4 * * FRI"]);
        // A day-of-month starting with * keeps "both must match", as crontab(5) says.
        assert_eq!(ok("0 0 */2 * MON"), [format!("0 0 0 {} * MON", odd_days())]);
    }

    fn odd_days() -> String {
        join((1..=31).step_by(2).map(|d: u32| d.to_string()))
    }

    #[test]
    fn other_fields_become_lists() {
        assert_eq!(
            ok("*/15 9-17 * jan,Jul *"),
            ["0 0,15,30,45 9,10,11,12,13,14,15,16,17 * 1,7 *"]
        );
        assert_eq!(ok("5/20 * * * *"), ["0 5,25,45 * * * *"]);
        assert_eq!(ok("0 0 ? * *"), ["0 0 0 * * *"]);
    }

    #[test]
    fn every_problem_is_named_in_the_operators_terms() {
        let problems = translate("61 24 0 13 8").unwrap_err();
        assert_eq!(
            problems,
            [
                "minute: 61 is out of range 0-59",
                "hour: 24 is out of range 0-23",
                "day of month: 0 is out of range 1-31",
                "month: 13 is out of range 1-12",
                "day of week: 8 is out of range 0-7 (0 and 7 are Sunday)",
            ]
        );
        let problems = translate("*/0 5-1 1,,2 FOO MO").unwrap_err();
        assert_eq!(
            problems,
            [
                "minute: step 0 in \"*/0\": a step must be at least 1",
                "hour: \"5-1\" runs backwards; write it as two ranges (5-23,0-1)",
                "day of month: an empty item in a list (two commas, or a comma at an end)",
                "month: \"FOO\" is not a number or a name (JAN-DEC)",
                "day of week: \"MO\" is not a number or a name (SUN-SAT)",
            ]
        );
        assert_eq!(
            translate("0 2 * *").unwrap_err(),
            ["has 4 fields; a five-field expression is minute hour day-of-month month day-of-week"]
        );
        assert_eq!(
            translate("? * * * *").unwrap_err(),
            ["minute: \"?\" is only allowed for the day of month or the day of week"]
        );
    }
}
