package main

import "syscall"

// dieWithParent makes the kernel kill a server when the benchmark dies, so
// an interrupted run never leaves one listening.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
