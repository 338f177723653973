package api

import (
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/apikeys"
)

// startBackgroundChat starts a gateway chat completion as a ChatRunWorkflow
// and responds 202 with the run id. body is the client's request with
// "background" removed; logicalModel is its "model".
//
// TODO: create the run and start the workflow.
func (s *Server) startBackgroundChat(c *gin.Context, key *apikeys.Principal, body map[string]json.RawMessage, logicalModel string) {
	abortError(c, http.StatusNotImplemented, "not_implemented", "background chat completions are not available yet")
}
