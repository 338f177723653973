// Package deploytest holds the tests of the deployment files at the
// repository root: Dockerfile, .dockerignore and docker-compose.temporal.yml.
// No Docker engine is needed. The tests read the files, build the binary the
// way the Dockerfile does, and run the Compose file's Temporal commands with
// the Temporal CLI against a dev server.
package deploytest
