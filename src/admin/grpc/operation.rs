//! `yandex.cloud.operation.OperationService`: an operation by id from the
//! operations log (any node sharing the store), with its `response`; a
//! cancel answers `FAILED_PRECONDITION` (every operation is done). See
//! the REST twin, `GET /operations/{operationId}`.

use tonic::{Request, Response, Status};

use super::Services;
use super::op::operation_service_server::OperationService;
use super::op::{CancelOperationRequest, GetOperationRequest, Operation};
use super::{call, operation_message, status};
use crate::admin::auth::AdminAuth;
use crate::admin::operations::{Found, OperationResult};
use crate::store::KeyStore;

const GET: &str = "/yandex.cloud.operation.OperationService/Get";
const CANCEL: &str = "/yandex.cloud.operation.OperationService/Cancel";

#[tonic::async_trait]
impl<S: KeyStore, A: AdminAuth> OperationService for Services<S, A> {
    async fn get(&self, request: Request<GetOperationRequest>) -> Result<Response<Operation>, Status> {
        let (parts, m) = call(request, GET);
        let caller = self.api.authenticate(&parts).await.map_err(status)?;
        Ok(Response::new(match self.api.operation_by_id(&caller, &m.operation_id).await.map_err(status)? {
            Found::Key(op) => operation_message(&op, OperationResult::of(&op)),
            Found::Resource(c) => super::resources::operation(&c),
        }))
    }

    async fn cancel(&self, request: Request<CancelOperationRequest>) -> Result<Response<Operation>, Status> {
        let (parts, m) = call(request, CANCEL);
        let caller = self.api.authenticate(&parts).await.map_err(status)?;
        Err(status(self.api.cancel_operation(&caller, &m.operation_id).await))
    }
}
