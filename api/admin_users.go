package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/store"
)

// registerAdminUserRoutes adds the user management routes under /admin.
func (s *Server) registerAdminUserRoutes(admin *gin.RouterGroup) {
	admin.GET("/users", s.listUsers)
	admin.PATCH("/users/:id", s.updateUser)
}

func (s *Server) listUsers(c *gin.Context) {
	page, ok := pageParams(c)
	if !ok {
		return
	}
	items, next, err := s.Store.ListUsers(c, page)
	if s.pageError(c, err) {
		return
	}
	views := make([]userView, len(items))
	for i := range items {
		views[i] = viewUser(&items[i])
	}
	c.JSON(http.StatusOK, gin.H{"items": views, "next_cursor": nullable(next)})
}

// updateUser sets is_active and is_superuser. Disabling a user also revokes
// all of their sessions. requireUser and refresh reject a disabled user
// anyway, but the revocation keeps the old tokens dead after re-enabling.
func (s *Server) updateUser(c *gin.Context) {
	var req struct {
		IsActive    *bool `json:"is_active"`
		IsSuperuser *bool `json:"is_superuser"`
	}
	if !decodeJSON(c, &req) {
		return
	}
	if req.IsActive == nil && req.IsSuperuser == nil {
		abortError(c, http.StatusBadRequest, "invalid_request", "send is_active, is_superuser or both")
		return
	}

	// A superuser who disables or demotes themselves could leave no one
	// able to undo it.
	id := c.Param("id")
	if id == currentUser(c).ID {
		if req.IsActive != nil && !*req.IsActive {
			abortError(c, http.StatusConflict, "cannot_disable_self", "a superuser cannot disable their own account; ask another superuser")
			return
		}
		if req.IsSuperuser != nil && !*req.IsSuperuser {
			abortError(c, http.StatusConflict, "cannot_demote_self", "a superuser cannot remove their own superuser role; ask another superuser")
			return
		}
	}

	user, err := s.Store.UpdateUserFlags(c, id, store.UserFlags{IsActive: req.IsActive, IsSuperuser: req.IsSuperuser})
	if s.lookupError(c, "user", err) {
		return
	}

	// NOTE: a login that read the user as active just before this update
	// can still record a session after RevokeAll. The user check in
	// requireUser and refresh rejects that session while the user stays
	// disabled.
	if req.IsActive != nil && !*req.IsActive {
		n, err := s.Tokens.RevokeAll(c, user.ID)
		if err != nil {
			// The user is disabled already, so a retry of the same PATCH
			// revokes the sessions.
			s.unavailable(c, "user disabled, but revoking the sessions failed", err)
			return
		}
		s.Logger.Info("user disabled; sessions revoked", "user_id", user.ID, "sessions", n, "admin_id", currentUser(c).ID)
	}
	if req.IsActive != nil {
		if err := s.APIKeys.DropUserKeys(c, user.ID); err != nil {
			// The account is updated already, so a retry of the same PATCH
			// drops the cached keys.
			s.unavailable(c, "user updated, but dropping the cached API keys failed", err)
			return
		}
	}
	c.JSON(http.StatusOK, viewUser(user))
}
