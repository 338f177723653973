package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/aihigress/aihigress/internal/apikeys"
)

type userPage struct {
	Items      []userView `json:"items"`
	NextCursor *string    `json:"next_cursor"`
}

func TestAdminUsersNeedSuperuser(t *testing.T) {
	e := newAuthEnv(t)
	aliceID := e.register("alice")
	alice := e.login("alice")

	tests := []struct {
		name   string
		method string
		path   string
		body   any
	}{
		{"list", "GET", "/admin/users", nil},
		{"patch other", "PATCH", "/admin/users/" + uuid.NewString(), map[string]any{"is_active": false}},
		{"promote self", "PATCH", "/admin/users/" + aliceID, map[string]any{"is_superuser": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.do(tt.method, tt.path, alice.AccessToken, tt.body).expect(t, http.StatusForbidden, "superuser_required")
			e.do(tt.method, tt.path, "", tt.body).expect(t, http.StatusUnauthorized, "missing_token")
		})
	}

	r := e.do("GET", "/auth/me", alice.AccessToken, nil)
	r.expect(t, http.StatusOK, "")
	var me userView
	r.decode(t, &me)
	if me.IsSuperuser {
		t.Error("a user promoted themselves")
	}
}

func TestAdminDisableUser(t *testing.T) {
	e := newAuthEnv(t)
	e.createSuperuser("root")
	root := e.login("root")
	aliceID := e.register("alice")
	sessions := []string{"first", "second"}
	pairs := map[string]struct{ access, refresh string }{}
	for _, name := range sessions {
		p := e.login("alice")
		pairs[name] = struct{ access, refresh string }{p.AccessToken, p.RefreshToken}
	}

	apiKey, _, err := e.keys.Create(context.Background(), aliceID, apikeys.NewKey{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	// The first use caches the key, so the checks below prove that
	// disabling the account drops the cached entry.
	e.do("GET", "/v1/models", apiKey, nil).expect(t, http.StatusOK, "")

	r := e.do("PATCH", "/admin/users/"+aliceID, root.AccessToken, map[string]any{"is_active": false})
	r.expect(t, http.StatusOK, "")
	e.do("GET", "/v1/models", apiKey, nil).expect(t, http.StatusForbidden, "user_disabled")
	var updated userView
	r.decode(t, &updated)
	if updated.ID != aliceID || updated.IsActive {
		t.Fatalf("PATCH returned %+v, want user %s inactive", updated, aliceID)
	}

	// The tokens stop working at once.
	for _, name := range sessions {
		e.do("GET", "/auth/me", pairs[name].access, nil).expect(t, http.StatusForbidden, "user_disabled")
		e.refresh(pairs[name].refresh).expect(t, http.StatusForbidden, "user_disabled")
	}
	e.do("POST", "/auth/login", "", map[string]string{"username": "alice", "password": testPassword}).
		expect(t, http.StatusForbidden, "user_disabled")

	// The sessions were revoked, not only blocked by the disabled flag, so
	// they stay dead after the user is enabled again.
	e.do("PATCH", "/admin/users/"+aliceID, root.AccessToken, map[string]any{"is_active": true}).expect(t, http.StatusOK, "")
	e.do("GET", "/v1/models", apiKey, nil).expect(t, http.StatusOK, "")
	for _, name := range sessions {
		e.do("GET", "/auth/me", pairs[name].access, nil).expect(t, http.StatusUnauthorized, "token_revoked")
		e.refresh(pairs[name].refresh).expect(t, http.StatusUnauthorized, "token_revoked")
	}
	fresh := e.login("alice")
	e.do("GET", "/auth/me", fresh.AccessToken, nil).expect(t, http.StatusOK, "")
	e.do("GET", "/auth/me", root.AccessToken, nil).expect(t, http.StatusOK, "")
}

func TestAdminUpdateUser(t *testing.T) {
	e := newAuthEnv(t)
	rootID := e.createSuperuser("root")
	root := e.login("root")
	aliceID := e.register("alice")

	tests := []struct {
		name   string
		id     string
		body   any
		status int
		code   string
	}{
		{"disable self", rootID, map[string]any{"is_active": false}, http.StatusConflict, "cannot_disable_self"},
		{"demote self", rootID, map[string]any{"is_superuser": false}, http.StatusConflict, "cannot_demote_self"},
		{"demote and disable self", rootID, map[string]any{"is_superuser": false, "is_active": false}, http.StatusConflict, "cannot_disable_self"},
		{"keep self active", rootID, map[string]any{"is_active": true, "is_superuser": true}, http.StatusOK, ""},
		{"no fields", aliceID, map[string]any{}, http.StatusBadRequest, "invalid_request"},
		{"null fields", aliceID, `{"is_active": null}`, http.StatusBadRequest, "invalid_request"},
		{"unknown field", aliceID, map[string]any{"is_active": true, "username": "mallory"}, http.StatusBadRequest, "unknown_field"},
		{"wrong type", aliceID, map[string]any{"is_active": "no"}, http.StatusBadRequest, "invalid_field"},
		{"unknown user", uuid.NewString(), map[string]any{"is_active": false}, http.StatusNotFound, "user_not_found"},
		{"malformed ID", "not-a-uuid", map[string]any{"is_active": false}, http.StatusNotFound, "user_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.do("PATCH", "/admin/users/"+tt.id, root.AccessToken, tt.body).expect(t, tt.status, tt.code)
		})
	}

	// The rejected requests changed nothing.
	r := e.do("GET", "/auth/me", root.AccessToken, nil)
	r.expect(t, http.StatusOK, "")
	var me userView
	r.decode(t, &me)
	if !me.IsActive || !me.IsSuperuser {
		t.Fatalf("root after the rejected updates: %+v", me)
	}

	// A promotion applies to the user's next request with the same token.
	alice := e.login("alice")
	e.do("GET", "/admin/users", alice.AccessToken, nil).expect(t, http.StatusForbidden, "superuser_required")
	r = e.do("PATCH", "/admin/users/"+aliceID, root.AccessToken, map[string]any{"is_superuser": true})
	r.expect(t, http.StatusOK, "")
	var promoted userView
	r.decode(t, &promoted)
	if !promoted.IsSuperuser || !promoted.IsActive {
		t.Errorf("PATCH returned %+v, want an active superuser", promoted)
	}
	e.do("GET", "/admin/users", alice.AccessToken, nil).expect(t, http.StatusOK, "")

	// Demoting another superuser is allowed and does not end their sessions.
	e.do("PATCH", "/admin/users/"+aliceID, root.AccessToken, map[string]any{"is_superuser": false}).expect(t, http.StatusOK, "")
	e.do("GET", "/admin/users", alice.AccessToken, nil).expect(t, http.StatusForbidden, "superuser_required")
	e.do("GET", "/auth/me", alice.AccessToken, nil).expect(t, http.StatusOK, "")
}

func TestAdminListUsers(t *testing.T) {
	e := newAuthEnv(t)
	e.createSuperuser("root")
	root := e.login("root")
	for i := range 4 {
		e.register(fmt.Sprintf("user%d", i))
	}

	var seen []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatalf("pagination did not end; seen %v", seen)
		}
		path := "/admin/users?limit=2"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		r := e.do("GET", path, root.AccessToken, nil)
		r.expect(t, http.StatusOK, "")
		var page userPage
		r.decode(t, &page)
		if len(page.Items) > 2 {
			t.Fatalf("page has %d items, want at most 2", len(page.Items))
		}
		for _, u := range page.Items {
			seen = append(seen, u.Username)
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}

	want := []string{"user3", "user2", "user1", "user0", "root"}
	if strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Errorf("listed %v, want newest first %v", seen, want)
	}

	tests := []struct {
		name  string
		query string
		code  string
	}{
		{"limit zero", "?limit=0", "invalid_parameter"},
		{"limit too large", "?limit=101", "invalid_parameter"},
		{"bad cursor", "?cursor=abc", "invalid_cursor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.do("GET", "/admin/users"+tt.query, root.AccessToken, nil).expect(t, http.StatusBadRequest, tt.code)
		})
	}

	r := e.do("GET", "/admin/users", root.AccessToken, nil)
	if strings.Contains(string(r.body), "password") {
		t.Errorf("the user list exposes a password field: %s", r.body)
	}
}
