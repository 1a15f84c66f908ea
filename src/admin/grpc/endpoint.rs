//! `yandex.cloud.endpoint.ApiEndpointService`, without authentication (the
//! SDKs call it before they authenticate): the services this server
//! answers for, all at the advertised address. The Python SDK looks up
//! `iam` for `yandex.cloud.iam` (and for every authenticated client) and
//! `operation` for `OperationService` (its operation waiter),
//! `resource-manager` for folders and clouds and `organization-manager`
//! for organizations.

use tonic::{Request, Response, Status};

use super::ApiEndpoints;
use super::pb::yandex::cloud::endpoint::api_endpoint_service_server::ApiEndpointService;
use super::pb::yandex::cloud::endpoint::{
    ApiEndpoint, GetApiEndpointRequest, ListApiEndpointsRequest, ListApiEndpointsResponse,
};

/// The ids listed: the services this server implements.
pub const SERVICES: [&str; 4] = ["iam", "operation", "resource-manager", "organization-manager"];

/// The service: [`SERVICES`] at the advertised address.
#[derive(Debug, Clone)]
pub struct Endpoints {
    endpoints: ApiEndpoints,
}

impl Endpoints {
    pub(super) fn new(endpoints: ApiEndpoints) -> Self {
        Self { endpoints }
    }

    fn endpoint(&self, id: &str) -> ApiEndpoint {
        ApiEndpoint { id: id.to_owned(), address: self.endpoints.address().to_owned() }
    }
}

#[tonic::async_trait]
impl ApiEndpointService for Endpoints {
    async fn get(&self, request: Request<GetApiEndpointRequest>) -> Result<Response<ApiEndpoint>, Status> {
        let id = request.into_inner().api_endpoint_id;
        match SERVICES.iter().find(|s| **s == id) {
            Some(found) => Ok(Response::new(self.endpoint(found))),
            None => Err(Status::not_found(format!("no such endpoint (known: {})", SERVICES.join(", ")))),
        }
    }

    /// All of [`SERVICES`] on one page (the page size and token are
    /// accepted and have nothing to page).
    async fn list(
        &self,
        _request: Request<ListApiEndpointsRequest>,
    ) -> Result<Response<ListApiEndpointsResponse>, Status> {
        let endpoints = SERVICES.iter().map(|id| self.endpoint(id)).collect();
        Ok(Response::new(ListApiEndpointsResponse { endpoints, next_page_token: String::new() }))
    }
}
