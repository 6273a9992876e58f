//! The `hooks:` of the agent's configuration, checked: every problem of every hook is
//! reported at once, with the hook's field (`hooks.<name>.command`).

use std::collections::BTreeMap;
use std::time::Duration;

use fleet_events::ids::check_slug;

use super::raw::RawHook;
use crate::executor::HookDef;
use crate::executor::hooks::{DEFAULT_TIMEOUT, MAX_TIMEOUT};

/// Variable names a hook's `env` may not set: restic's secrets (hooks never get them) and
/// the agent's own `FLEET_` ones.
fn reserved(name: &str) -> Option<&'static str> {
    if name.starts_with("RESTIC_") {
        Some("hooks get none of restic's variables (its password and repository stay with restic)")
    } else if name.starts_with("FLEET_") {
        Some("FLEET_ variables are set by the agent")
    } else {
        None
    }
}

/// The hooks of `raw`, or nothing after reporting each problem through `fail`.
/// `secret_vars` are the agent's `passwordEnv` variables, which a hook may not name.
pub(super) fn validate(
    raw: BTreeMap<String, RawHook>,
    secret_vars: &[&str],
    fail: &mut impl FnMut(&str, String),
) -> BTreeMap<String, HookDef> {
    let mut hooks = BTreeMap::new();
    for (name, hook) in raw {
        let field = format!("hooks.{name}");
        let mut ok = true;
        let mut problem = |what: &str, message: String| {
            ok = false;
            fail(&format!("{field}{what}"), message);
        };
        if let Err(e) = check_slug("hook name", &name) {
            problem("", e.to_string());
        }
        let command = hook.command.unwrap_or_default();
        match command.first() {
            None => problem(
                ".command",
                "is required: the program, then its arguments".into(),
            ),
            Some(program) if program.trim().is_empty() => {
                problem(".command", "must start with a program".into())
            }
            Some(_) => {}
        }
        if command.iter().any(|arg| arg.contains('\0')) {
            problem(".command", "must not contain NUL characters".into());
        }
        let timeout = match hook.timeout.as_deref().map(parse_timeout) {
            None => DEFAULT_TIMEOUT,
            Some(Ok(timeout)) if timeout <= MAX_TIMEOUT && timeout >= Duration::from_secs(1) => {
                timeout
            }
            Some(Ok(_)) => {
                problem(".timeout", "must be between 1s and 24h".into());
                DEFAULT_TIMEOUT
            }
            Some(Err(message)) => {
                problem(".timeout", message);
                DEFAULT_TIMEOUT
            }
        };
        if let Some(cwd) = &hook.cwd
            && !cwd.is_absolute()
        {
            problem(".cwd", "must be an absolute path".into());
        }
        for (var, value) in &hook.env {
            let at = format!(".env.{var}");
            if var.is_empty() || var.contains(['=', '\0']) {
                problem(&at, "is not an environment variable name".into());
            } else if let Some(why) = reserved(var) {
                problem(&at, why.into());
            } else if secret_vars.contains(&var.as_str()) {
                problem(
                    &at,
                    "holds a repository password (secrets: passwordEnv)".into(),
                );
            }
            if value.contains('\0') {
                problem(&at, "must not contain NUL characters".into());
            }
        }
        if ok {
            let def = HookDef {
                command,
                timeout,
                cwd: hook.cwd,
                env: hook.env,
            };
            hooks.insert(name, def);
        }
    }
    hooks
}

/// `90s`, `10m`, `1h`, `1h30m`, or whole seconds (`600`).
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 30s, 10m, 1h or 1h30m");
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let (mut total, mut digits, mut pairs) = (0u64, String::new(), 0);
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(bad)?;
        digits.clear();
        pairs += 1;
    }
    if pairs == 0 || !digits.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}
