package localenv

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestSecondStartRefused: a second environment in a directory whose
// environment is running refuses before touching anything (it once
// deleted the running one's azsim/endpoints.json first).
func TestSecondStartRefused(t *testing.T) {
	dir := t.TempDir()
	lock, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	endpoints := filepath.Join(dir, "azsim", "endpoints.json")
	os.MkdirAll(filepath.Dir(endpoints), 0o700)
	os.WriteFile(endpoints, []byte(`{"address":"127.0.0.1:1"}`), 0o600)
	_, err = Start(context.Background(), Config{Dir: dir, BinDir: t.TempDir()})
	if !errors.Is(err, ErrRunning) {
		t.Fatalf("second start: %v, want ErrRunning", err)
	}
	if _, err := os.Stat(endpoints); err != nil {
		t.Errorf("the running environment's endpoints.json was touched: %v", err)
	}
	lock.Close()
	if l, err := lockDir(dir); err != nil {
		t.Errorf("the lock was not released: %v", err)
	} else {
		l.Close()
	}
}
