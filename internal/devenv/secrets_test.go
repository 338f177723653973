package devenv

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDevSecretsPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "dev-secrets.json")
	counter := 0
	newValue := func() string {
		counter++
		return "value-" + string(rune('a'+counter))
	}

	first, err := DevSecrets(path, []string{"MASTER_KEY"}, newValue)
	if err != nil {
		t.Fatal(err)
	}
	second, err := DevSecrets(path, []string{"MASTER_KEY", "JWT_SECRET"}, newValue)
	if err != nil {
		t.Fatal(err)
	}

	if second["MASTER_KEY"] != first["MASTER_KEY"] {
		t.Errorf("MASTER_KEY changed between starts: %q then %q", first["MASTER_KEY"], second["MASTER_KEY"])
	}
	if second["JWT_SECRET"] == "" || second["JWT_SECRET"] == second["MASTER_KEY"] {
		t.Errorf("JWT_SECRET = %q, want a new distinct value", second["JWT_SECRET"])
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("file mode = %o, want 600", mode)
	}
}

func TestDevSecretsCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dev-secrets.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := DevSecrets(path, []string{"MASTER_KEY"}, func() string { return "x" }); err == nil {
		t.Error("DevSecrets accepted a corrupt file")
	}
}
