package runner

import "fmt"

// SetGatewayAccessLog sets the gateway's access_log directive: "off", or a
// path followed by a log format. It takes effect when nginx next starts or
// reloads. The benchmark turns the access log off, as the template suggests.
func (l *Lab) SetGatewayAccessLog(value string) { l.gateway.vars["GATEWAY_ACCESS_LOG"] = value }

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
