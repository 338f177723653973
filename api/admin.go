package api

import "github.com/gin-gonic/gin"

// registerAdminRoutes adds the superuser routes under /admin.
func (s *Server) registerAdminRoutes(admin *gin.RouterGroup) {
	s.registerAdminUserRoutes(admin)
	s.registerCatalogAdminRoutes(admin)
}
