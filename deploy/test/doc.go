// Package deploytest validates the deployment files (DESIGN §11): the Helm chart in
// deploy/helm/msgrouter is linted and rendered with the Helm library, and every
// rendered object is decoded strictly (unknown fields fail) into its Kubernetes API
// type — KEDA's ScaledObject into a transcription of KEDA's v1alpha1 types; and
// docker-compose.yml is loaded by the Compose Specification's reference Go loader.
//
// It is a module of its own so that Helm, the Kubernetes API types and compose-go
// (heavy) stay out of the msgrouter module: no production binary can import them.
// Run it with `cd deploy/test && go test ./...` (CI does, see .ci/run).
package deploytest
