//! Column-aligned text for people: tables with a header row, and `label: value` lists.

/// A table: a header and rows of cells, each column as wide as its widest cell.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    right: Vec<bool>,
}

/// Between two columns.
const GAP: &str = "  ";

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            right: vec![false; header.len()],
        }
    }

    /// Aligns `column` (from 0) to the right, as numbers are.
    pub fn right(mut self, column: usize) -> Self {
        if let Some(right) = self.right.get_mut(column) {
            *right = true;
        }
        self
    }

    /// Adds a row; missing cells are empty, extra ones are dropped, and control characters
    /// (a newline in an error message) become spaces so a row stays one line.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells.into_iter().map(|c| one_line(&c)).collect();
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as lines, each ending in a newline; no trailing spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str(GAP);
                }
                let pad = " ".repeat(widths[i] - width(cell));
                if self.right[i] {
                    line.push_str(&pad);
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&pad);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `label: value` lines with the values aligned; an empty label continues the value above.
pub fn fields(rows: &[(&str, String)]) -> String {
    let wide = rows
        .iter()
        .map(|(label, _)| width(label))
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (label, value) in rows {
        let head = match label.is_empty() {
            true => String::new(),
            false => format!("{label}:"),
        };
        let line = format!("{head:<w$} {value}", w = wide + 1);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Width in characters (the CLI's own text is ASCII; names may not be, and wide CJK
/// characters will then misalign, which is acceptable here).
fn width(text: &str) -> usize {
    text.chars().count()
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_their_widest_cell() {
        let mut table = Table::new(&["NAME", "RUNNING", "STATE"]).right(1);
        table.row(vec!["web-1".into(), "1/2".into(), "online".into()]);
        table.row(vec!["database-primary".into(), "10/16".into(), "".into()]);
        assert_eq!(
            table.render(),
            "NAME              RUNNING  STATE\n\
             web-1                 1/2  online\n\
             database-primary    10/16\n"
        );
    }

    #[test]
    fn rows_stay_one_line_and_fit_the_header() {
        let mut table = Table::new(&["A", "B"]);
        table.row(vec!["x".into()]);
        table.row(vec!["y".into(), "two\nlines".into(), "dropped".into()]);
        assert_eq!(table.render(), "A  B\nx\ny  two lines\n");
        assert_eq!(Table::new(&["ONLY"]).render(), "ONLY\n");
    }

    #[test]
    fn fields_align_values() {
        let text = fields(&[
            ("id", "abc".into()),
            ("backoff until", "-".into()),
            ("", "continued".into()),
            ("empty", String::new()),
        ]);
        assert_eq!(
            text,
            "id:            abc\n\
             backoff until: -\n               continued\n\
             empty:\n"
        );
    }
}
