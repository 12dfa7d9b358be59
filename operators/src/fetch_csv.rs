//! PLACEHOLDER — being written; replaced wholesale by the real operator.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::registry::OpParams;
use crate::{Operator, ParamError, Workload};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvParams {}

impl OpParams for CsvParams {
    const NAME: &'static str = "fetch.csv";
    const DOC: &'static str = "placeholder";
    const WORKLOAD: Workload = Workload::Io;
    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        Err(ParamError::new(&[], "not yet built"))
    }
}
