//! Bringing the accounts and data of another system's running deployment into nodegrid
//! (`nodegrid import …`). One module per source system; this one holds what they share: the
//! report an import prints and its error type.

pub mod motience;

use std::fmt;

use serde::Serialize;

use crate::db::DbError;

/// Why an import could not run. Per-row problems are not errors: they are in the report.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the source database: {0}")]
    Source(DbError),
    #[error("the source is not a {system} database: {reason}")]
    NotTheSource {
        system: &'static str,
        reason: String,
    },
    #[error("nodegrid's database: {0}")]
    Target(#[from] DbError),
}

/// How many rows of one kind an import wrote, found already there, or skipped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub imported: u64,
    pub unchanged: u64,
    pub skipped: u64,
}

/// A nodegrid account moved out of the way of an imported id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MovedAccount {
    pub username: String,
    pub from_id: i64,
    pub to_id: i64,
}

/// What kind of problem a row had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The row clashes with something nodegrid holds, or with another row; it was skipped.
    Conflict,
    /// The row has no nodegrid equivalent (a role, a status, a hash format); it was skipped.
    Skipped,
    /// The row's id belongs to an account imported earlier from elsewhere: the import stops.
    Collision,
}

/// One row's problem, named by its table and id in the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub table: &'static str,
    pub source_id: i64,
    pub kind: ProblemKind,
    pub message: String,
}

/// What an import did (or, with `--dry-run`, would do).
#[derive(Debug, Default, Clone, Serialize)]
pub struct ImportReport {
    pub source: &'static str,
    pub dry_run: bool,
    /// Set when the import stopped and wrote nothing.
    pub aborted: Option<String>,
    pub users: Counts,
    pub moved: Vec<MovedAccount>,
    pub subscriptions: Counts,
    /// Present when data rows were asked for.
    pub data_rows: Option<Counts>,
    pub problems: Vec<Problem>,
    /// Things that did not stop the import but that an operator should know.
    pub warnings: Vec<String>,
}

impl ImportReport {
    /// Rows written and accounts moved: zero for a run that found everything in place.
    pub fn changes(&self) -> u64 {
        self.users.imported
            + self.moved.len() as u64
            + self.subscriptions.imported
            + self.data_rows.map_or(0, |rows| rows.imported)
    }

    pub(crate) fn problem(
        &mut self,
        table: &'static str,
        source_id: i64,
        kind: ProblemKind,
        message: String,
    ) {
        self.problems.push(Problem {
            table,
            source_id,
            kind,
            message,
        });
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} imported, {} unchanged, {} skipped",
            self.imported, self.unchanged, self.skipped
        )
    }
}

/// The summary printed at the end of a run.
impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.dry_run {
            " (dry run: nothing was written)"
        } else {
            ""
        };
        writeln!(f, "import from {}{mode}", self.source)?;
        writeln!(f, "users:         {}", self.users)?;
        for moved in &self.moved {
            writeln!(
                f,
                "  moved nodegrid account {:?} from id {} to id {}",
                moved.username, moved.from_id, moved.to_id
            )?;
        }
        writeln!(f, "subscriptions: {}", self.subscriptions)?;
        if let Some(rows) = self.data_rows {
            writeln!(f, "data rows:     {rows}")?;
        }
        if !self.problems.is_empty() {
            writeln!(f, "problems:")?;
            for problem in &self.problems {
                let kind = match problem.kind {
                    ProblemKind::Conflict => "conflict",
                    ProblemKind::Skipped => "skipped",
                    ProblemKind::Collision => "collision",
                };
                writeln!(
                    f,
                    "  {kind}: {} {}: {}",
                    problem.table, problem.source_id, problem.message
                )?;
            }
        }
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        if let Some(reason) = &self.aborted {
            writeln!(f, "stopped: {reason}; nothing was written")?;
        }
        write!(f, "changes: {}", self.changes())
    }
}
