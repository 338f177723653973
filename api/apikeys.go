package api

import "github.com/gin-gonic/gin"

// registerAPIKeyRoutes adds the API key management routes, which need a
// logged-in user.
func (s *Server) registerAPIKeyRoutes(v1 *gin.RouterGroup) {}
