package analysis

// The webhook gates, as pkg/controller/scheduler_hooks.go runs them.

func (m *Machine) payload(phase Phase, h Webhook) Payload {
	name, ns := m.cname()
	return Payload{Name: name, Namespace: ns, Phase: phase, Checksum: m.checksum(), Metadata: h.Metadata}
}

// call calls one hook and notes it in the tick.
func (m *Machine) call(h Webhook, phase Phase) error {
	err := m.env.CallWebhook(m.ctx, h, m.payload(phase, h))
	hc := HookCall{Hook: h.Name, Type: h.Type, Phase: phase}
	if hc.Type == "" {
		hc.Type = HookRollout
	}
	if err != nil {
		hc.Error = err.Error()
	}
	m.tick.Hooks = append(m.tick.Hooks, hc)
	return err
}

func (m *Machine) hooks(t HookType) []Webhook {
	var out []Webhook
	for _, h := range m.an.Webhooks {
		if h.Type == t || (t == HookRollout && h.Type == "") {
			out = append(out, h)
		}
	}
	return out
}

func (m *Machine) confirmRolloutHooks() bool {
	name, ns := m.cname()
	for _, h := range m.hooks(HookConfirmRollout) {
		if err := m.call(h, m.status.Phase); err != nil {
			if m.status.Phase != PhaseWaiting {
				m.setPhase(PhaseWaiting)
				m.warn("Halt %s.%s advancement waiting for approval %s", name, ns, h.Name)
			}
			return false
		}
		m.info("Confirm-rollout check %s passed", h.Name)
	}
	return true
}

func (m *Machine) confirmPromotionHooks() bool {
	name, ns := m.cname()
	for _, h := range m.hooks(HookConfirmPromotion) {
		if err := m.call(h, PhaseProgressing); err != nil {
			if m.status.Phase != PhaseWaitingPromotion {
				m.setPhase(PhaseWaitingPromotion)
				m.warn("Halt %s.%s advancement waiting for promotion approval %s", name, ns, h.Name)
			} else {
				m.setIterations(m.an.Iterations - 1)
			}
			return false
		}
		m.info("Confirm-promotion check %s passed", h.Name)
	}
	return true
}

func (m *Machine) trafficIncreaseHooks() bool {
	name, ns := m.cname()
	for _, h := range m.hooks(HookConfirmTrafficIncrease) {
		if err := m.call(h, PhaseProgressing); err != nil {
			m.warn("Halt %s.%s advancement waiting for traffic increase approval %s", name, ns, h.Name)
			return false
		}
		m.info("Confirm-traffic-increase check %s passed", h.Name)
	}
	return true
}

func (m *Machine) preRolloutHooks() bool {
	name, ns := m.cname()
	for _, h := range m.hooks(HookPreRollout) {
		if err := m.call(h, PhaseProgressing); err != nil {
			m.warn("Halt %s.%s advancement pre-rollout check %s failed %v", name, ns, h.Name, err)
			return false
		}
		m.info("Pre-rollout check %s passed", h.Name)
	}
	return true
}

func (m *Machine) postRolloutHooks(phase Phase) {
	for _, h := range m.hooks(HookPostRollout) {
		if err := m.call(h, phase); err != nil {
			m.warn("Post-rollout hook %s failed %v", h.Name, err)
			return
		}
		m.info("Post-rollout check %s passed", h.Name)
	}
}

// rollbackHooks reports whether a rollback hook asks for a rollback (a
// 2xx answer).
func (m *Machine) rollbackHooks(phase Phase) bool {
	for _, h := range m.hooks(HookRollback) {
		if err := m.call(h, phase); err != nil {
			m.info("Rollback hook %s not signaling a rollback", h.Name)
			continue
		}
		m.warn("Rollback check %s passed", h.Name)
		return true
	}
	return false
}

// rolloutHooks runs the rollout hooks of runAnalysis.
func (m *Machine) rolloutHooks() bool {
	name, ns := m.cname()
	for _, h := range m.hooks(HookRollout) {
		if err := m.call(h, PhaseProgressing); err != nil {
			m.warn("Halt %s.%s advancement external check %s failed %v", name, ns, h.Name, err)
			return false
		}
	}
	return true
}
