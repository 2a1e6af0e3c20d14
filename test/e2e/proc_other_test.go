//go:build !linux

package e2e

import "syscall"

// dieWithParent has no portable equivalent outside Linux; t.Cleanup still
// kills every server when a test ends normally.
func dieWithParent() *syscall.SysProcAttr { return nil }
