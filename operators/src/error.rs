//! Errors split by who is at fault: the pipeline's author ([`ParamError`] and
//! [`OpError::Invalid`]), the environment ([`OpError::Source`], [`OpError::Io`]),
//! or a bug in quiver ([`OpError::Internal`]).

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// A parameter an operator cannot accept, found while building it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    /// Where in the parameters the problem is, as keys and indexes
    /// (`["columns", "2"]`); empty for the parameters as a whole.
    pub path: Vec<String>,
    pub message: String,
}

impl ParamError {
    pub fn new(path: &[&str], message: impl Into<String>) -> Self {
        Self {
            path: path.iter().map(|s| s.to_string()).collect(),
            message: message.into(),
        }
    }
}

/// Who is at fault for a failure, which decides what the user should do
/// about it: fix the pipeline, fix the environment, or report a bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The pipeline asked for something that cannot work: change the pipeline.
    Pipeline,
    /// Something outside quiver failed: a source, the network, the disk, memory.
    Environment,
    /// quiver itself is wrong: report it.
    Bug,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Pipeline => "pipeline",
            Fault::Environment => "environment",
            Fault::Bug => "bug",
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure while running an operator.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The pipeline asked for something that cannot work with this data
    /// (a missing input, a column that does not exist, SQL that does not plan).
    #[error("{0}")]
    Invalid(String),
    /// A data source failed. `transient` failures (timeouts, throttling, 5xx)
    /// may succeed when retried; others will not.
    #[error("{message}")]
    Source { message: String, transient: bool },
    /// The source asked us to slow down (HTTP 429 and the like); retry no
    /// sooner than `retry_after` when it says.
    #[error("{message}")]
    Throttled {
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// The run's memory limit (`--memory-limit`) left too little for this.
    #[error("{0}")]
    MemoryLimit(String),
    /// The work was no longer wanted (a timeout, Ctrl-C).
    #[error("cancelled")]
    Cancelled,
    /// A bug in quiver.
    #[error("internal error: {0}. This is likely a bug in quiver, please report it")]
    Internal(String),
}

impl OpError {
    /// How long the source asked us to wait before trying again.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            OpError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            OpError::Invalid(_) => Fault::Pipeline,
            OpError::Source { .. }
            | OpError::Throttled { .. }
            | OpError::Io { .. }
            | OpError::MemoryLimit(_)
            | OpError::Cancelled => Fault::Environment,
            OpError::DataFusion(e) => datafusion_fault(e),
            // Arrow errors while running come from data that does not fit
            // what the pipeline asked of it (a cast, a schema mismatch).
            OpError::Arrow(_) => Fault::Pipeline,
            OpError::Internal(_) => Fault::Bug,
        }
    }

    /// The messages of this error's causes, outermost first, itself excluded.
    pub fn causes(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            out.push(e.to_string());
            next = e.source();
        }
        out
    }

    /// Whether trying again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            OpError::Source { transient, .. } => *transient,
            OpError::Throttled { .. } => true,
            OpError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }
}

/// DataFusion's own split of its errors into who is at fault.
fn datafusion_fault(e: &DataFusionError) -> Fault {
    match e.find_root() {
        DataFusionError::Internal(_) | DataFusionError::ExecutionJoin(_) => Fault::Bug,
        DataFusionError::IoError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::ResourcesExhausted(_)
        | DataFusionError::External(_) => Fault::Environment,
        _ => Fault::Pipeline,
    }
}
