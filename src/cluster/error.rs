//! What can go wrong talking to the cluster's Redis, by the operation that failed: the
//! `op` label of `cluster_errors_total`.

use redis::RedisError;

/// The operation a Redis call belonged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Appending events to a stream's log.
    Append,
    /// Reading a stream's log (history, follow, catch-up).
    Read,
    /// Taking, renewing or releasing a stream key's lease.
    Lease,
    /// Taking, renewing or releasing a client slot.
    Limits,
}

/// A failed Redis operation; `Display` is the log line, [`ClusterError::reason`] the label.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis did not answer: refused, dropped, or slower than the timeout.
    #[error("redis unreachable: {0}")]
    Connect(String),
    /// Redis refused an append.
    #[error("append to the stream log: {0}")]
    Append(String),
    /// Redis refused a read.
    #[error("read of the stream log: {0}")]
    Read(String),
    /// Redis refused a lease command.
    #[error("stream lease: {0}")]
    Lease(String),
    /// Redis refused a client-slot command.
    #[error("client slots: {0}")]
    Limits(String),
}

impl ClusterError {
    /// The error of `op` failing with `error`: unreachable Redis is `connect` whatever the op.
    pub fn of(op: Op, error: &RedisError) -> ClusterError {
        let text = error.to_string();
        if error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_unrecoverable_error()
        {
            return ClusterError::Connect(text);
        }
        match op {
            Op::Append => ClusterError::Append(text),
            Op::Read => ClusterError::Read(text),
            Op::Lease => ClusterError::Lease(text),
            Op::Limits => ClusterError::Limits(text),
        }
    }

    /// The `op` label of `cluster_errors_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ClusterError::Connect(_) => "connect",
            ClusterError::Append(_) => "append",
            ClusterError::Read(_) => "read",
            ClusterError::Lease(_) => "lease",
            ClusterError::Limits(_) => "limits",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::CLUSTER_OPS;

    #[test]
    fn every_reason_is_a_known_label() {
        let errors = [
            ClusterError::Connect(String::new()),
            ClusterError::Append(String::new()),
            ClusterError::Read(String::new()),
            ClusterError::Lease(String::new()),
            ClusterError::Limits(String::new()),
        ];
        let reasons: Vec<&str> = errors.iter().map(ClusterError::reason).collect();
        assert_eq!(reasons, CLUSTER_OPS);
    }

    #[test]
    fn a_refused_command_keeps_its_operation() {
        let refused = RedisError::from((redis::ErrorKind::Client, "nope"));
        assert_eq!(ClusterError::of(Op::Append, &refused).reason(), "append");
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(ClusterError::of(Op::Lease, &io).reason(), "connect");
    }
}
