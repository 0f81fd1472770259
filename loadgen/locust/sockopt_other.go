//go:build !linux

package locust

import (
	"net"
	"time"
)

func setUserTimeout(*net.TCPConn, time.Duration) {}
