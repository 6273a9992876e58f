//! The Prometheus text of this process's metrics: the process that installs a recorder
//! sets its source once; a server that shows `/metrics` (the API) reads it here, without
//! knowing which services run beside it.

use std::sync::OnceLock;

type Source = Box<dyn Fn() -> String + Send + Sync>;

static SOURCE: OnceLock<Source> = OnceLock::new();

/// Sets where [`text`] comes from; only the first call counts (one recorder a process).
pub fn set_source(source: impl Fn() -> String + Send + Sync + 'static) {
    let _ = SOURCE.set(Box::new(source));
}

/// This process's metrics text; `None` until a recorder is installed.
pub fn text() -> Option<String> {
    SOURCE.get().map(|source| source())
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_text_before_a_source_and_the_first_source_stays() {
        assert_eq!(super::text(), None);
        super::set_source(|| "a 1\n".to_owned());
        super::set_source(|| "b 2\n".to_owned());
        assert_eq!(super::text().as_deref(), Some("a 1\n"));
    }
}
