package store_test

import (
	"strings"
	"testing"

	"gorm.io/gorm/schema"

	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/models"
)

// TestMigrationsMatchModels checks that the migrated schema of the dialect
// under test has every table and column that the GORM models declare.
func TestMigrationsMatchModels(t *testing.T) {
	st := testenv.Store(t)
	migrator := st.DB.Migrator()

	for _, model := range models.All() {
		parsed, err := schema.Parse(model, &schemaCache, st.DB.NamingStrategy)
		if err != nil {
			t.Fatalf("parse %T: %v", model, err)
		}
		if !migrator.HasTable(parsed.Table) {
			t.Errorf("%s: table %s is missing", st.Dialect, parsed.Table)
			continue
		}
		columns, err := migrator.ColumnTypes(parsed.Table)
		if err != nil {
			t.Fatalf("column types of %s: %v", parsed.Table, err)
		}
		have := make(map[string]string, len(columns))
		for _, c := range columns {
			have[c.Name()] = strings.ToLower(c.DatabaseTypeName())
		}
		for _, field := range parsed.Fields {
			if field.DBName == "" {
				continue
			}
			if _, ok := have[field.DBName]; !ok {
				t.Errorf("%s: column %s.%s is missing", st.Dialect, parsed.Table, field.DBName)
			}
		}
	}
}

// TestPostgresColumnTypes checks the PostgreSQL-specific choices: UUID keys,
// JSONB documents and timestamptz times.
func TestPostgresColumnTypes(t *testing.T) {
	st := testenv.Store(t)
	if st.Dialect != store.Postgres {
		t.Skip("runs only with TEST_DATABASE_URL set to PostgreSQL")
	}
	want := []struct{ table, column, typ string }{
		{"users", "id", "uuid"},
		{"messages", "content", "jsonb"},
		{"chat_runs", "created_at", "timestamptz"},
		{"chat_runs", "conversation_id", "uuid"},
		{"chat_run_events", "payload", "jsonb"},
		{"chat_run_events", "run_id", "uuid"},
	}
	for _, w := range want {
		columns, err := st.DB.Migrator().ColumnTypes(w.table)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, c := range columns {
			if c.Name() == w.column {
				found = true
				if got := strings.ToLower(c.DatabaseTypeName()); got != w.typ {
					t.Errorf("%s.%s type = %s, want %s", w.table, w.column, got, w.typ)
				}
			}
		}
		if !found {
			t.Errorf("%s.%s is missing", w.table, w.column)
		}
	}

	var indexed int64
	err := st.DB.Raw(`SELECT count(*) FROM pg_indexes WHERE tablename = 'chat_run_events' AND indexdef LIKE '%(run_id, seq)%'`).Scan(&indexed).Error
	if err != nil {
		t.Fatal(err)
	}
	if indexed != 1 {
		t.Errorf("unique index on chat_run_events (run_id, seq): found %d, want 1", indexed)
	}
}

// TestPostgresForeignKeysIndexed checks that every foreign key column leads
// some index, so cascades and joins never scan a whole table.
func TestPostgresForeignKeysIndexed(t *testing.T) {
	st := testenv.Store(t)
	if st.Dialect != store.Postgres {
		t.Skip("runs only with TEST_DATABASE_URL set to PostgreSQL")
	}
	var missing []string
	err := st.DB.Raw(`
		SELECT c.conrelid::regclass::text || '.' || a.attname
		FROM pg_constraint c
		JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
		WHERE c.contype = 'f'
		  AND NOT EXISTS (
		    SELECT 1 FROM pg_index i
		    WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1])`).Scan(&missing).Error
	if err != nil {
		t.Fatal(err)
	}
	for _, column := range missing {
		t.Errorf("foreign key column %s has no index", column)
	}
}
