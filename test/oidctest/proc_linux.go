package oidctest

import "syscall"

// dieWithParent makes the kernel kill the provider when the test binary
// dies, so a panic or a timeout never leaves it listening.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
