package runner

import (
	"fmt"
	"io"
)

// SetGatewayAccessLog sets the gateway's access_log directive: "off", or a
// path followed by a log format. It takes effect when nginx next starts or
// reloads. The benchmark turns the access log off, as the template suggests.
func (l *Lab) SetGatewayAccessLog(value string) { l.gateway.vars["GATEWAY_ACCESS_LOG"] = value }

// DefaultGatewayAccessLog is the access_log directive's value as make run
// ships it: a JSON line per request in the logs folder.
func (l *Lab) DefaultGatewayAccessLog() string { return l.logPath("gateway-access") + " lab_json" }

// SetEcho sets where the services' and nginx's output is echoed, as make
// run echoes it to its terminal; nil for nowhere. It takes effect for the
// parts started after it.
func (l *Lab) SetEcho(w io.Writer) { l.echo = w }

// SetServiceEnv adds KEY=value pairs to one service's environment; they take
// effect when it next starts (Start or StartPart). A key set twice keeps its
// last value, as os/exec does with duplicates.
func (l *Lab) SetServiceEnv(name string, kv ...string) error {
	s := l.services[name]
	if s == nil {
		return fmt.Errorf("unknown service %q", name)
	}
	s.env = append(s.env, kv...)
	return nil
}
