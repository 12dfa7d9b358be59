//! PLACEHOLDER — being written; replaced wholesale by the real operator.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::registry::OpParams;
use crate::{Operator, ParamError, Workload};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlParams {}

impl OpParams for SqlParams {
    const NAME: &'static str = "transform.sql";
    const DOC: &'static str = "placeholder";
    const WORKLOAD: Workload = Workload::Cpu;
    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        Err(ParamError::new(&[], "not yet built"))
    }
}
