/* The team page: members and their monthly caps, API keys, webhook endpoints and deliveries.
 * Everything is read and changed through the public API (/api/v1/account/…, /api/v1/webhooks/…),
 * the same one integrations use; the page holds no rule of its own (the server refuses what a
 * member may not do, and says why). Its API client is api.js, shared with app.js. */
(function () {
  "use strict";

  var root = document.getElementById("team");
  if (!root) return;
  var urls = root.dataset;
  var state = { me: null, owner: false, members: [] };

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") node.textContent = attrs[name];
      else if (name === "hidden") node.hidden = attrs[name];
      else node.setAttribute(name, attrs[name]);
    });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  var api = window.creditgate.api;
  var sentence = window.creditgate.sentence;

  function describe(err) {
    var fields = Object.keys(err.details || {}).filter(function (f) { return Array.isArray(err.details[f]); });
    var extra = fields.map(function (f) { return err.details[f].join(" "); }).join(" ");
    return sentence(err.message) + (extra && err.code === "invalid_request" ? " " + extra : "");
  }

  function announce(text) { $("status").textContent = text; }

  function showAlert(text) {
    $("alert").textContent = text || "";
    $("alert").hidden = !text;
  }

  function fail(err) { showAlert(describe(err)); }

  function when(iso) {
    if (!iso) return "never";
    var d = new Date(iso);
    return d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " " +
      d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }

  // "" -> null (no cap); a whole number >= 0 -> the number; anything else -> undefined (refused here,
  // so the person hears it at once; the server would refuse it too).
  function capValue(text) {
    text = String(text || "").trim();
    if (text === "") return null;
    return /^\d+$/.test(text) ? parseInt(text, 10) : undefined;
  }

  function usage(row) {
    var words = row.used + (row.monthly_cap === null ? " (no cap)" : " of " + row.monthly_cap);
    var span = el("span", { text: words });
    if (row.monthly_cap !== null && row.used >= row.monthly_cap) span.className = "over";
    var cell = el("td", { class: "num" }, [span]);
    if (row.monthly_cap) {
      cell.appendChild(el("meter", { class: "meter", min: "0", max: String(row.monthly_cap),
                                     value: String(Math.min(row.used, row.monthly_cap)),
                                     "aria-label": row.username + " used " + words }));
    }
    return cell;
  }

  // --- members ----------------------------------------------------------------------------------

  function loadMembers() {
    return api(urls.membersUrl).then(function (members) {
      state.members = members;
      state.me = members.filter(function (m) { return m.is_you; })[0] || null;
      state.owner = !!(state.me && state.me.role === "owner");
      $("members-intro").textContent = state.owner
        ? "Each member's credits this month (spent plus held by running jobs) against their monthly cap. "
          + "Leave a cap empty for none."
        : "Your credits this month (spent plus held by running jobs) against your monthly cap, set by the "
          + "account's owners.";
      renderMembers();
      renderKeyMemberChoice();
      $("endpoint-form").hidden = !state.owner;
      $("invite-section").hidden = !state.owner;
      // Members see only themselves: anyone who is not the account's only member may try to leave
      // (the server refuses the last owner, and says so).
      $("leave-actions").hidden = state.owner ? members.length < 2 : false;
    });
  }

  function renderMembers() {
    var body = $("member-rows");
    body.textContent = "";
    state.members.forEach(function (m) {
      var name = m.username + (m.is_you ? " (you)" : "");
      var capCell = el("td");
      if (state.owner) {
        var inputId = "cap-" + m.id;
        var input = el("input", { type: "text", inputmode: "numeric", id: inputId, name: "monthly_cap",
                                  value: m.monthly_cap === null ? "" : String(m.monthly_cap),
                                  placeholder: "no cap" });
        var form = el("form", { class: "cap-form", "data-member": String(m.id), novalidate: "" }, [
          el("label", { for: inputId, class: "visually-hidden", text: "Monthly cap for " + m.username }),
          input,
          el("button", { type: "submit", class: "secondary", text: "Save cap",
                         "aria-label": "Save the cap of " + m.username }),
        ]);
        form.addEventListener("submit", function (event) {
          event.preventDefault();
          saveCap(m, input.value);
        });
        capCell.appendChild(form);
      } else {
        capCell.textContent = m.monthly_cap === null ? "No cap" : m.monthly_cap + " credits";
      }
      var actions = el("td");
      if (state.owner && !m.is_you) {
        [["Make owner", "Make " + m.username + " the owner", function () { makeOwner(m); }],
         ["Remove", "Remove " + m.username + " from the team", function () { removeMember(m); }]
        ].forEach(function (spec) {
          var b = el("button", { type: "button", class: "secondary", text: spec[0], "aria-label": spec[1] });
          b.addEventListener("click", spec[2]);
          actions.appendChild(b);
        });
      }
      body.appendChild(el("tr", { "data-member": m.username }, [
        el("td", { text: name }), el("td", { text: m.role === "owner" ? "Owner" : "Member" }), usage(m), capCell,
        actions,
      ]));
    });
  }

  function makeOwner(member) {
    showAlert("");
    api(urls.membersUrl + member.id + "/make-owner/", { method: "POST" }).then(function () {
      announce(member.username + " is now the owner; you are a member.");
      return reloadAll();
    }).catch(fail);
  }

  function removeMember(member) {
    showAlert("");
    api(urls.membersUrl + member.id + "/remove/", { method: "POST" }).then(function () {
      announce(member.username + " was removed from the team.");
      return reloadAll();
    }).catch(fail);
  }

  function leaveTeam() {
    showAlert("");
    api(urls.leaveUrl, { method: "POST" }).then(function () {
      announce("You left the team and are back in your own account.");
      return reloadAll();
    }).catch(fail);
  }

  // --- invitations --------------------------------------------------------------------------------

  function loadInvitations() {
    if (!state.owner) return Promise.resolve();
    return api(urls.invitationsUrl).then(function (invitations) {
      var body = $("invite-rows");
      body.textContent = "";
      $("invites-empty").hidden = invitations.length > 0;
      invitations.forEach(function (inv) {
        var button = el("button", { type: "button", class: "secondary", text: "Revoke",
                                    "aria-label": "Revoke the invitation of " + inv.email });
        button.addEventListener("click", function () { revokeInvitation(inv); });
        body.appendChild(el("tr", { "data-invitation": inv.email }, [
          el("td", { text: inv.email }), el("td", { text: inv.role === "owner" ? "Owner" : "Member" }),
          el("td", { text: inv.monthly_cap === null ? "No cap" : inv.monthly_cap + " credits" }),
          el("td", { text: when(inv.expires_at) }), el("td", {}, [button]),
        ]));
      });
    });
  }

  function sendInvitation(event) {
    event.preventDefault();
    var email = $("invite-email").value.trim();
    var cap = capValue($("invite-cap").value);
    if (!email) { showAlert("Enter the email address to invite."); return; }
    if (cap === undefined) { showAlert("A cap is a whole number of credits (0 or more), or empty for no cap."); return; }
    showAlert("");
    api(urls.invitationsUrl, { method: "POST", body: { email: email, role: $("invite-role").value,
                                                       monthly_cap: cap } }).then(function (created) {
      $("new-invite-text").textContent = created.email_sent
        ? "Invitation emailed to " + created.email + ". Its link, if you want to hand it over yourself:"
        : "The email could not be sent. Hand this link to " + created.email + " yourself:";
      $("new-invite-link").textContent = created.link;
      $("new-invite").hidden = false;
      $("invite-form").reset();
      announce("Invitation sent to " + created.email + ".");
      return loadInvitations();
    }).catch(fail);
  }

  function revokeInvitation(invitation) {
    showAlert("");
    api(urls.invitationsUrl + invitation.id + "/revoke/", { method: "POST" }).then(function () {
      announce("The invitation of " + invitation.email + " was revoked.");
      return loadInvitations();
    }).catch(fail);
  }

  function reloadAll() {
    return loadMembers().then(function () {
      return Promise.all([loadKeys(), loadEndpoints(), loadInvitations()]);
    });
  }

  function saveCap(member, text) {
    var cap = capValue(text);
    if (cap === undefined) {
      showAlert("A cap is a whole number of credits (0 or more), or empty for no cap.");
      return;
    }
    showAlert("");
    api(urls.membersUrl + member.id + "/", { method: "PATCH", body: { monthly_cap: cap } }).then(function (m) {
      announce(m.monthly_cap === null ? m.username + " has no monthly cap now."
        : m.username + " may now use " + m.monthly_cap + " credits a month.");
      return loadMembers();
    }).catch(fail);
  }

  // --- API keys -----------------------------------------------------------------------------------

  function renderKeyMemberChoice() {
    var select = $("key-member");
    select.textContent = "";
    state.members.forEach(function (m) {
      var option = el("option", { value: String(m.id), text: m.username + (m.is_you ? " (you)" : "") });
      if (m.is_you) option.selected = true;
      select.appendChild(option);
    });
    $("key-member-field").hidden = !state.owner || state.members.length < 2;
  }

  function loadKeys() {
    return api(urls.keysUrl).then(function (keys) {
      var body = $("key-rows");
      body.textContent = "";
      $("keys-empty").hidden = keys.length > 0;
      keys.forEach(function (k) {
        var revoked = !!k.revoked_at;
        var label = el("span", { class: revoked ? "revoked" : "", text: k.name }, []);
        var actions = el("td");
        if (!revoked) {
          var button = el("button", { type: "button", class: "secondary", text: "Revoke",
                                      "aria-label": "Revoke the key " + k.name });
          button.addEventListener("click", function () { revokeKey(k); });
          actions.appendChild(button);
        } else {
          actions.textContent = "Revoked";
        }
        var capText = k.used + (k.monthly_cap === null ? "" : " / " + k.monthly_cap);
        body.appendChild(el("tr", { "data-key": k.name }, [
          el("td", {}, [label, el("span", { class: "reason", text: k.hint })]),
          el("td", { text: k.username }),
          el("td", { class: "num", text: capText }),
          el("td", { text: when(k.last_used_at) }),
          actions,
        ]));
      });
    });
  }

  function createKey(event) {
    event.preventDefault();
    var name = $("key-name").value.trim();
    var cap = capValue($("key-cap").value);
    if (!name) { showAlert("Give the key a name, e.g. the integration that will use it."); return; }
    if (cap === undefined) { showAlert("A key's cap is a whole number of credits, or empty."); return; }
    var body = { name: name, monthly_cap: cap };
    if (state.owner && $("key-member").value) body.member = parseInt($("key-member").value, 10);
    showAlert("");
    api(urls.keysUrl, { method: "POST", body: body }).then(function (created) {
      $("new-key-value").textContent = created.key;
      $("new-key").hidden = false;
      $("key-form").reset();
      renderKeyMemberChoice();
      announce("Key " + created.name + " created. Copy it now: it is shown only once.");
      return loadKeys();
    }).catch(fail);
  }

  function revokeKey(key) {
    showAlert("");
    api(urls.keysUrl + key.id + "/revoke/", { method: "POST" }).then(function () {
      announce("Key " + key.name + " revoked: requests with it are refused from now on.");
      return loadKeys();
    }).catch(fail);
  }

  // --- webhooks -----------------------------------------------------------------------------------

  function loadEndpoints() {
    return api(urls.endpointsUrl).then(function (endpoints) {
      var list = $("endpoint-list");
      list.textContent = "";
      $("endpoints-empty").hidden = endpoints.length > 0;
      endpoints.forEach(function (e) {
        var item = el("li", { "data-endpoint": e.url }, [
          el("div", { class: "endpoint-url", text: e.url }),
          el("div", { class: "muted", text: (e.description ? e.description + " · " : "")
            + (e.all_jobs ? "every job" : "only jobs that name it") + (e.is_active ? "" : " · disabled") }),
          el("div", {}, ["Id: ", el("code", { text: e.id })]),
        ]);
        if (state.owner) {
          var actions = el("div", { class: "actions" });
          [["Send test event", function () { sendTest(e); }],
           [e.is_active ? "Disable" : "Enable", function () { setActive(e, !e.is_active); }],
           ["Remove", function () { removeEndpoint(e); }]].forEach(function (pair) {
            var b = el("button", { type: "button", class: "secondary", text: pair[0],
                                   "aria-label": pair[0] + " (" + e.url + ")" });
            b.addEventListener("click", pair[1]);
            actions.appendChild(b);
          });
          item.appendChild(actions);
        }
        list.appendChild(item);
      });
    });
  }

  function createEndpoint(event) {
    event.preventDefault();
    showAlert("");
    api(urls.endpointsUrl, { method: "POST", body: {
      url: $("endpoint-url").value.trim(), description: $("endpoint-description").value.trim(),
      all_jobs: $("endpoint-all").checked,
    } }).then(function (created) {
      $("new-secret-value").textContent = created.secret;
      $("new-secret").hidden = false;
      $("endpoint-form").reset();
      announce("Endpoint added. Copy its signing secret now: it is shown only once.");
      return loadEndpoints();
    }).catch(fail);
  }

  function sendTest(endpoint) {
    showAlert("");
    api(urls.endpointsUrl + endpoint.id + "/test/", { method: "POST" }).then(function () {
      announce("Test event sent to " + endpoint.url + ".");
      setTimeout(loadDeliveries, 1500);
      return loadDeliveries();
    }).catch(fail);
  }

  function setActive(endpoint, active) {
    api(urls.endpointsUrl + endpoint.id + "/", { method: "PATCH", body: { is_active: active } })
      .then(loadEndpoints).catch(fail);
  }

  function removeEndpoint(endpoint) {
    api(urls.endpointsUrl + endpoint.id + "/", { method: "DELETE" })
      .then(function () { announce("Endpoint removed."); return Promise.all([loadEndpoints(), loadDeliveries()]); })
      .catch(fail);
  }

  var STATUS = { pending: "Retrying", succeeded: "Delivered", failed: "Failed" };

  function loadDeliveries() {
    return api(urls.deliveriesUrl).then(function (page) {
      var body = $("delivery-rows");
      body.textContent = "";
      $("deliveries-empty").hidden = page.results.length > 0;
      page.results.forEach(function (d) {
        var what = d.event_type === "job.finished" ? "Job finished" : "Test event";
        var event = el("td", {}, [what, el("span", { class: "reason", text: d.event_id })]);
        if (d.job) event.appendChild(el("a", { href: "/jobs/" + d.job + "/", class: "reason", text: "the job" }));
        var status = el("td", {}, [STATUS[d.status] || d.status]);
        if (d.last_error) status.appendChild(el("span", { class: "reason", text: d.last_error }));
        var attempts = el("details", {}, [el("summary", { text: String(d.attempts) })]);
        attempts.addEventListener("toggle", function () {
          if (!attempts.open || attempts.dataset.loaded) return;
          attempts.dataset.loaded = "1";
          api(urls.deliveriesUrl + d.id + "/").then(function (detail) {
            var list = el("ol");
            detail.attempt_log.forEach(function (a) {
              list.appendChild(el("li", { text: when(a.started_at) + ": " + (a.ok ? "OK " + a.status_code
                : (a.error || "failed")) + " (" + a.duration_ms + " ms)" }));
            });
            attempts.appendChild(list);
          }).catch(fail);
        });
        body.appendChild(el("tr", { "data-delivery": d.id }, [
          el("td", { text: when(d.created_at) }), event, status, el("td", {}, [attempts]),
        ]));
      });
    });
  }

  $("key-form").addEventListener("submit", createKey);
  $("invite-form").addEventListener("submit", sendInvitation);
  $("leave-team").addEventListener("click", leaveTeam);
  $("endpoint-form").addEventListener("submit", createEndpoint);
  $("deliveries-refresh").addEventListener("click", function () { loadDeliveries().catch(fail); });

  loadMembers()
    .then(function () { return Promise.all([loadKeys(), loadEndpoints(), loadDeliveries(), loadInvitations()]); })
    .then(function () { root.dataset.ready = "true"; })
    .catch(fail);
})();
