// Package cmdtest is what the tests of a command (cmd/*) share: the command built
// once per test binary, free loopback addresses to start it on, and the started
// process (Start, WaitReady, Terminate).
package cmdtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Binary is the command in the test's working directory (the package under
// test), built on first use. The zero value with a Name is ready.
type Binary struct {
	Name string // the executable's file name

	once sync.Once
	dir  string
	path string
	err  error
}

// Path builds the command (go build .) into a temporary directory on the first
// call and returns the executable's path; a build failure fails t, on every call.
// TestMain calls Main (or Remove once the tests have run).
func (b *Binary) Path(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", b.Name+"-bin-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, b.Name)
		if out, err := exec.Command("go", "build", "-o", b.path, ".").CombinedOutput(); err != nil {
			b.err = fmt.Errorf("%v: %s", err, out)
		}
	})
	if b.err != nil {
		t.Fatalf("cmdtest: building %s: %v", b.Name, b.err)
	}
	return b.path
}

// Remove deletes what Path built. It does nothing when Path was never called.
func (b *Binary) Remove() {
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// Main is the whole TestMain of a command's tests: it runs them, removes what
// Path built and exits with the tests' status.
func (b *Binary) Main(m *testing.M) {
	code := m.Run()
	b.Remove()
	os.Exit(code)
}

// FreeAddr returns a loopback host:port nobody listened on a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cmdtest: %v", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}
