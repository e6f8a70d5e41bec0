//! Domain errors and their one mapping to gRPC statuses.

use calcmesh_calc::arith::ArithError;
use calcmesh_calc::factor::FactorError;
use calcmesh_calc::stats::StatsError;
use tonic::{Code, Status};

/// Every way a calculator request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// An arithmetic operation has no answer.
    #[error(transparent)]
    Arith(#[from] ArithError),
    /// A number has no prime factorization.
    #[error(transparent)]
    Factor(#[from] FactorError),
    /// A number cannot be summarized.
    #[error(transparent)]
    Stats(#[from] StatsError),
}

impl ServiceError {
    /// The gRPC status code for this error.
    pub fn code(&self) -> Code {
        match self {
            ServiceError::Arith(ArithError::Overflow { .. }) => Code::OutOfRange,
            ServiceError::Arith(_) | ServiceError::Factor(_) | ServiceError::Stats(_) => {
                Code::InvalidArgument
            }
        }
    }
}

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Self {
        Status::new(err.code(), err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calcmesh_calc::arith::calculate;

    #[test]
    fn codes() {
        let code = |r: Result<f64, ArithError>| ServiceError::from(r.unwrap_err()).code();
        assert_eq!(code(calculate(1.0, "?", 1.0)), Code::InvalidArgument);
        assert_eq!(code(calculate(1.0, "/", 0.0)), Code::InvalidArgument);
        assert_eq!(code(calculate(f64::NAN, "+", 0.0)), Code::InvalidArgument);
        assert_eq!(code(calculate(f64::MAX, "+", f64::MAX)), Code::OutOfRange);
        let status = Status::from(ServiceError::from(FactorError::NoFactorization(1)));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(">= 2"));
    }
}
