package e2e

import "syscall"

// dieWithParent makes the kernel kill a started server when the test binary
// dies, so a panic or a timeout never leaves registries listening.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
