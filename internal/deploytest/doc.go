// Package deploytest holds the tests of the deployment files at the
// repository root: Dockerfile, .dockerignore and docker-compose.temporal.yml.
// No Docker engine is needed. The tests load the Compose file with
// compose-spec/compose-go, the loader that Docker Compose v2 is built on.
// They read the Dockerfile and build the binary the way it does, and they
// run the Compose file's Temporal commands with the Temporal CLI against a
// dev server.
package deploytest
