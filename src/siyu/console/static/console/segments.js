/* siyu console: the segment rule builder.
   A rule is JSON (docs/segments.md): {"and": [...]}, {"or": [...]}, {"not": node} or a condition.
   The builder shows it as nested groups of condition rows; the JSON textarea shows the same rule and
   may be edited too. Every change writes the rule into the form's hidden input and fires a
   "rule-change" event, on which htmx asks the server for the live count (debounced). The server's
   field errors name paths such as rule.and[1].count.op: the row at that path is marked.
   Labels come from the page (<script id="builder-options">), already in the reader's language. */
(function () {
  "use strict";

  var ATTRIBUTE_OPS = {
    choice: ["eq", "neq", "in", "not_in", "is_set", "is_not_set"],
    number: ["eq", "neq", "gt", "gte", "lt", "lte", "in", "not_in", "is_set", "is_not_set"],
    text: ["eq", "neq", "in", "not_in", "contains", "is_set", "is_not_set"]
  };
  var TRAIT_OPS = ["eq", "neq", "in", "not_in", "contains", "gt", "gte", "lt", "lte", "is_set", "is_not_set"];
  var NUMBER_OPS = ["gt", "gte", "lt", "lte"];
  var LIST_OPS = ["in", "not_in"];
  var NO_VALUE_OPS = ["is_set", "is_not_set"];
  var EVENT_KEYS = ["type", "event", "within_days", "count", "aggregate"];

  function h(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) { return; }
      if (key === "text") { node.textContent = value; } else if (key === "className") { node.className = value; }
      else { node.setAttribute(key, value === true ? "" : value); }
    });
    (children || []).forEach(function (child) { if (child) { node.appendChild(child); } });
    return node;
  }

  function select(role, label, options, current) {
    var node = h("select", {"data-role": role, "aria-label": label});
    options.forEach(function (option) {
      if (option.group) {
        var group = h("optgroup", {label: option.group});
        option.options.forEach(function (o) { group.appendChild(h("option", {value: o[0], text: o[1]})); });
        node.appendChild(group);
      } else {
        node.appendChild(h("option", {value: option[0], text: option[1]}));
      }
    });
    node.value = current === null || current === undefined ? "" : String(current);
    return node;
  }

  function input(role, label, value, attrs) {
    var node = h("input", Object.assign({type: "text", "data-role": role, "aria-label": label}, attrs || {}));
    node.value = value === null || value === undefined ? "" : String(value);
    return node;
  }

  function clone(value) { return JSON.parse(JSON.stringify(value)); }

  function isObject(value) { return value !== null && typeof value === "object" && !Array.isArray(value); }

  function Builder(root) {
    this.root = root;
    this.input = document.getElementById(root.dataset.ruleInput);
    this.tree = root.querySelector("[data-rule-tree]");
    this.json = root.querySelector("[data-rule-json]");
    this.jsonError = root.querySelector("[data-json-error]");
    this.o = JSON.parse(document.getElementById(root.dataset.options).textContent);
    this.t = this.o.text;
    this.fields = {};
    var self = this;
    this.o.attributes.forEach(function (group) {
      group.fields.forEach(function (field) { self.fields[field.name] = field; });
    });
    var body = null;
    try { body = JSON.parse(this.input.value); } catch (error) { body = null; }
    this.state = this.fromJSON(isObject(body) ? body : {"and": [this.newCondition("attribute")]}, true);
    this.render();
    this.sync(true, false);
    this.json.addEventListener("input", function () { self.fromText(); });
  }

  // -- the rule <-> the builder's state ------------------------------------------------------------
  // group: {group: "and"|"or", not: bool, children: [...]}; condition: {not: bool, c: {...}}
  Builder.prototype.fromJSON = function (node, top) {
    var state;
    if (isObject(node) && Object.keys(node).length === 1 && "not" in node) {
      state = this.fromJSON(node.not, top);
      state.not = !state.not;
      return state;
    }
    if (isObject(node) && (Array.isArray(node.and) || Array.isArray(node.or))) {
      var op = Array.isArray(node.and) ? "and" : "or";
      var self = this;
      return {group: op, not: false, children: node[op].map(function (child) { return self.fromJSON(child, false); })};
    }
    state = {not: false, c: isObject(node) ? clone(node) : {}};
    // The builder always shows a group on top; a lone condition becomes its only member.
    return top ? {group: "and", not: false, children: [state]} : state;
  };

  Builder.prototype.toJSON = function (state) {
    var self = this;
    var body;
    if (state.group) {
      body = {};
      body[state.group] = state.children.map(function (child) { return self.toJSON(child); });
    } else {
      body = state.c;
    }
    return state.not ? {not: body} : body;
  };

  Builder.prototype.rule = function () { return this.toJSON(this.state); };

  Builder.prototype.sync = function (writeText, announce) {
    var rule = this.rule();
    this.input.value = JSON.stringify(rule);
    if (writeText) {
      this.json.value = JSON.stringify(rule, null, 2);
      this.jsonError.hidden = true;
    }
    if (announce !== false) {
      this.root.dispatchEvent(new CustomEvent("rule-change", {bubbles: true}));
    }
  };

  Builder.prototype.fromText = function () {
    var body;
    try {
      body = JSON.parse(this.json.value);
    } catch (error) {
      this.jsonError.textContent = this.t.jsonError + " " + error.message;
      this.jsonError.hidden = false;
      return;
    }
    if (!isObject(body)) {
      this.jsonError.textContent = this.t.jsonObject;
      this.jsonError.hidden = false;
      return;
    }
    this.state = this.fromJSON(body, true);
    this.render();
    this.sync(false);
    this.jsonError.hidden = true;
  };

  // -- new conditions ------------------------------------------------------------------------------
  Builder.prototype.newCondition = function (type) {
    var o = this.o;
    if (type === "trait") { return {type: "trait", key: "", op: "eq", value: ""}; }
    if (type === "tag") { return {type: "tag", tag: o.tags.length ? o.tags[0] : "", op: "has"}; }
    if (type === "event") {
      return {type: "event", event: o.events.indexOf("Order Completed") >= 0 || !o.events.length ? "Order Completed" : o.events[0],
              within_days: 30};
    }
    if (type === "segment") { return {type: "segment", segment: o.segments.length ? o.segments[0][0] : null, op: "in"}; }
    return {type: "attribute", field: "order_count", op: "gte", value: 1};
  };

  // -- drawing ---------------------------------------------------------------------------------------
  Builder.prototype.render = function () {
    this.tree.textContent = "";
    this.tree.appendChild(this.renderNode(this.state, "rule", null));
  };

  Builder.prototype.changed = function () { this.sync(true); };

  Builder.prototype.notBox = function (state, path) {
    var self = this;
    var box = h("input", {type: "checkbox", "data-role": "not"});
    box.checked = !!state.not;
    box.addEventListener("change", function () { state.not = box.checked; self.render(); self.changed(); });
    return h("label", {className: "rule-not", title: this.t.notTitle, "data-path": null}, [box, document.createTextNode(" " + this.t.not)]);
  };

  Builder.prototype.renderNode = function (state, path, parent) {
    // A negated node's own path continues below "not".
    var own = state.not ? path + ".not" : path;
    return state.group ? this.renderGroup(state, path, own, parent) : this.renderCondition(state, path, own, parent);
  };

  Builder.prototype.renderGroup = function (state, path, own, parent) {
    var self = this;
    var t = this.t;
    var box = h("div", {className: "rule-group" + (state.not ? " negated" : ""), "data-path": own, role: "group"});
    var mode = select("group", t.match, [["and", t.all], ["or", t.any]], state.group);
    mode.addEventListener("change", function () { state.group = mode.value; self.render(); self.changed(); });
    var head = h("div", {className: "rule-group-head"}, [
      this.notBox(state, path), h("span", {text: t.match}), mode, h("span", {text: t.ofThese})
    ]);
    box.appendChild(head);
    var list = h("div", {className: "rule-children"});
    state.children.forEach(function (child, i) {
      list.appendChild(self.renderNode(child, own + "." + state.group + "[" + i + "]", state));
    });
    box.appendChild(list);
    var add = h("button", {type: "button", className: "small", "data-role": "add-condition", text: t.addCondition});
    add.addEventListener("click", function () {
      state.children.push({not: false, c: self.newCondition("attribute")});
      self.render(); self.changed();
    });
    var addGroup = h("button", {type: "button", className: "small", "data-role": "add-group", text: t.addGroup});
    addGroup.addEventListener("click", function () {
      state.children.push({group: state.group === "and" ? "or" : "and", not: false,
                           children: [{not: false, c: self.newCondition("attribute")}]});
      self.render(); self.changed();
    });
    var tools = h("div", {className: "rule-group-tools"}, [add, addGroup]);
    if (parent) { tools.appendChild(this.removeButton(parent, state)); }
    box.appendChild(tools);
    return box;
  };

  Builder.prototype.removeButton = function (parent, state) {
    var self = this;
    var button = h("button", {type: "button", className: "small rule-remove", "data-role": "remove",
                              "aria-label": this.t.remove, title: this.t.remove, text: "×"});
    button.addEventListener("click", function () {
      parent.children.splice(parent.children.indexOf(state), 1);
      self.render(); self.changed();
    });
    return button;
  };

  Builder.prototype.renderCondition = function (state, path, own, parent) {
    var self = this;
    var c = state.c;
    var row = h("div", {className: "rule-row" + (state.not ? " negated" : ""), "data-path": own});
    var types = Object.keys(this.o.types).map(function (key) { return [key, self.o.types[key]]; });
    var type = select("type", this.t.type, types, c.type);
    type.addEventListener("change", function () {
      state.c = self.newCondition(type.value);
      self.replaceRow(row, state, path, parent, "type");
    });
    row.appendChild(this.notBox(state, path));
    row.appendChild(type);
    var parts = h("div", {className: "rule-parts"});
    var draw = {attribute: this.attributeParts, trait: this.traitParts, tag: this.tagParts, event: this.eventParts,
                segment: this.segmentParts}[c.type];
    if (draw) {
      draw.call(this, c, parts, function (role) { self.replaceRow(row, state, path, parent, role); });
    } else {
      parts.appendChild(h("span", {className: "muted small", text: this.t.moreInJson}));
    }
    row.appendChild(parts);
    if (parent) { row.appendChild(this.removeButton(parent, state)); }
    return row;
  };

  // Redraw one row (its inputs depend on what changed), keeping the focus where it was.
  Builder.prototype.replaceRow = function (row, state, path, parent, role) {
    var fresh = this.renderCondition(state, path, state.not ? path + ".not" : path, parent);
    row.replaceWith(fresh);
    var focus = fresh.querySelector('[data-role="' + role + '"]');
    if (focus) { focus.focus(); }
    this.changed();
  };

  function bind(node, handler, self) {
    node.addEventListener(node.tagName === "SELECT" || node.type === "checkbox" ? "change" : "input", function () {
      handler(node);
      self.changed();
    });
    return node;
  }

  function listValue(text, numeric) {
    var items = text.split(/[,，]/).map(function (s) { return s.trim(); }).filter(function (s) { return s !== ""; });
    return numeric ? items.map(function (s) { return isNaN(Number(s)) ? s : Number(s); }) : items;
  }

  function numberValue(text) {
    return text.trim() === "" || isNaN(Number(text)) ? (text.trim() === "" ? null : text) : Number(text);
  }

  // Keep a value sensible when the operator changes between one value, a list and none.
  function reshape(c) {
    if (NO_VALUE_OPS.indexOf(c.op) >= 0) { delete c.value; return; }
    if (LIST_OPS.indexOf(c.op) >= 0) {
      if (!Array.isArray(c.value)) { c.value = c.value === undefined || c.value === null || c.value === "" ? [] : [c.value]; }
    } else if (Array.isArray(c.value)) {
      c.value = c.value.length ? c.value[0] : "";
    } else if (c.value === undefined) {
      c.value = "";
    }
  }

  Builder.prototype.opSelect = function (c, ops, redraw) {
    var labels = this.o.ops;
    var node = select("op", this.t.operator, ops.map(function (op) { return [op, labels[op] || op]; }), c.op);
    node.addEventListener("change", function () { c.op = node.value; reshape(c); redraw("op"); });
    return node;
  };

  Builder.prototype.attributeParts = function (c, parts, redraw) {
    var self = this;
    var groups = this.o.attributes.map(function (group) {
      return {group: group.group, options: group.fields.map(function (f) { return [f.name, f.label]; })};
    });
    var field = select("field", this.t.field, groups, c.field);
    var spec = this.fields[c.field];
    if (!spec) { field.appendChild(h("option", {value: c.field || "", text: c.field || ""})); field.value = c.field || ""; }
    field.addEventListener("change", function () {
      c.field = field.value;
      var next = self.fields[c.field];
      var kind = next.choices ? "choice" : next.kind;
      if (ATTRIBUTE_OPS[kind].indexOf(c.op) < 0) { c.op = "eq"; }
      c.value = next.choices ? next.choices[0][0] : (next.kind === "number" ? 0 : "");
      reshape(c);
      redraw("field");
    });
    parts.appendChild(field);
    var kind = spec ? (spec.choices ? "choice" : spec.kind) : "text";
    parts.appendChild(this.opSelect(c, ATTRIBUTE_OPS[kind], redraw));
    if (NO_VALUE_OPS.indexOf(c.op) >= 0) { return; }
    var listed = LIST_OPS.indexOf(c.op) >= 0;
    if (spec && spec.choices && listed) {
      var boxes = h("span", {className: "rule-choices", "data-role": "value", role: "group", "aria-label": this.t.values});
      spec.choices.forEach(function (choice) {
        var box = h("input", {type: "checkbox", value: choice[0]});
        box.checked = Array.isArray(c.value) && c.value.indexOf(choice[0]) >= 0;
        bind(box, function () {
          c.value = Array.from(boxes.querySelectorAll("input:checked")).map(function (b) { return b.value; });
        }, self);
        boxes.appendChild(h("label", {}, [box, document.createTextNode(" " + choice[1])]));
      });
      parts.appendChild(boxes);
    } else if (spec && spec.choices) {
      parts.appendChild(bind(select("value", this.t.value, spec.choices, c.value), function (node) { c.value = node.value; }, self));
    } else if (listed) {
      var numeric = spec && spec.kind === "number";
      parts.appendChild(bind(input("value", this.t.values, (c.value || []).join(", "), {placeholder: this.t.values}),
                             function (node) { c.value = listValue(node.value, numeric); }, self));
    } else if (spec && spec.kind === "number") {
      parts.appendChild(bind(input("value", this.t.value, c.value, {type: "number", step: "any"}),
                             function (node) { c.value = numberValue(node.value); }, self));
    } else {
      parts.appendChild(bind(input("value", this.t.value, c.value), function (node) { c.value = node.value; }, self));
    }
  };

  Builder.prototype.traitParts = function (c, parts, redraw) {
    var self = this;
    parts.appendChild(bind(input("key", this.t.trait, c.key, {placeholder: this.t.trait}),
                           function (node) { c.key = node.value; }, self));
    parts.appendChild(this.opSelect(c, TRAIT_OPS, redraw));
    if (NO_VALUE_OPS.indexOf(c.op) >= 0) { return; }
    if (LIST_OPS.indexOf(c.op) >= 0) {
      parts.appendChild(bind(input("value", this.t.values, (c.value || []).join(", "), {placeholder: this.t.values}),
                             function (node) { c.value = listValue(node.value, false); }, self));
    } else if (NUMBER_OPS.indexOf(c.op) >= 0) {
      parts.appendChild(bind(input("value", this.t.value, c.value, {type: "number", step: "any"}),
                             function (node) { c.value = numberValue(node.value); }, self));
    } else {
      parts.appendChild(bind(input("value", this.t.value, c.value), function (node) { c.value = node.value; }, self));
    }
  };

  Builder.prototype.datalist = function (id, values) {
    if (!document.getElementById(id)) {
      var list = h("datalist", {id: id});
      values.forEach(function (v) { list.appendChild(h("option", {value: v})); });
      this.root.appendChild(list);
    }
    return id;
  };

  Builder.prototype.tagParts = function (c, parts) {
    var labels = this.o.tagOps;
    var self = this;
    parts.appendChild(bind(select("op", this.t.operator, [["has", labels.has], ["has_not", labels.has_not]], c.op || "has"),
                           function (node) { c.op = node.value; }, self));
    parts.appendChild(bind(input("tag", this.t.tag, c.tag, {list: this.datalist("rule-tag-names", this.o.tags),
                                                            placeholder: this.t.tag}),
                           function (node) { c.tag = node.value; }, self));
  };

  Builder.prototype.eventParts = function (c, parts, redraw) {
    var self = this;
    var t = this.t;
    var compare = Object.keys(this.o.compare).map(function (op) { return [op, self.o.compare[op]]; });
    parts.appendChild(bind(input("event", t.event, c.event, {list: this.datalist("rule-event-names", this.o.events),
                                                              placeholder: t.event}),
                           function (node) { if (node.value.trim()) { c.event = node.value; } else { delete c.event; } }, self));
    parts.appendChild(h("span", {className: "rule-word", text: t.withinDays}));
    parts.appendChild(bind(input("within", t.withinDays, c.within_days, {type: "number", min: "1", max: "3650", className: "short"}),
                           function (node) { var v = numberValue(node.value); if (v === null) { delete c.within_days; } else { c.within_days = v; } }, self));
    // how often
    var count = c.count || null;
    var countOp = select("count-op", t.count, [["", t.anyCount]].concat(compare), count ? count.op : "");
    countOp.addEventListener("change", function () {
      if (countOp.value) { c.count = {op: countOp.value, value: count ? count.value : 1}; } else { delete c.count; }
      redraw("count-op");
    });
    var line = h("span", {className: "rule-line"}, [countOp]);
    if (count) {
      line.appendChild(bind(input("count-value", t.count, count.value, {type: "number", min: "0", step: "1", className: "short"}),
                            function (node) { c.count.value = numberValue(node.value); }, self));
      line.appendChild(h("span", {className: "rule-word", text: t.count}));
    }
    parts.appendChild(line);
    // how much
    var agg = c.aggregate || null;
    var fns = Object.keys(this.o.fns).map(function (fn) { return [fn, self.o.fns[fn]]; });
    var fn = select("agg-fn", t.aggregate, [["", t.noAggregate]].concat(fns), agg ? agg.fn : "");
    fn.addEventListener("change", function () {
      if (fn.value) {
        c.aggregate = agg ? Object.assign(agg, {fn: fn.value}) : {fn: fn.value, field: "revenue", op: "gte", value: 0};
      } else { delete c.aggregate; }
      redraw("agg-fn");
    });
    var amount = h("span", {className: "rule-line"}, [h("span", {className: "rule-word", text: t.aggregate}), fn]);
    if (agg) {
      amount.appendChild(h("span", {className: "rule-word", text: t.of}));
      amount.appendChild(bind(input("agg-field", t.aggField, agg.field, {list: this.datalist("rule-agg-fields", ["revenue", "source_id", "properties."])}),
                              function (node) { c.aggregate.field = node.value; }, self));
      amount.appendChild(bind(select("agg-op", t.operator, compare, agg.op), function (node) { c.aggregate.op = node.value; }, self));
      amount.appendChild(bind(input("agg-value", t.value, agg.value, {type: "number", step: "any", className: "short"}),
                              function (node) { c.aggregate.value = numberValue(node.value); }, self));
    }
    parts.appendChild(amount);
    if (Object.keys(c).some(function (key) { return EVENT_KEYS.indexOf(key) < 0; })) {
      parts.appendChild(h("span", {className: "muted small rule-line", text: t.moreInJson}));
    }
  };

  Builder.prototype.segmentParts = function (c, parts) {
    var labels = this.o.segmentOps;
    var self = this;
    parts.appendChild(bind(select("op", this.t.operator, [["in", labels["in"]], ["not_in", labels.not_in]], c.op || "in"),
                           function (node) { c.op = node.value; }, self));
    if (!this.o.segments.length) {
      parts.appendChild(h("span", {className: "muted small", text: this.t.noSegments}));
      return;
    }
    var options = [["", this.t.chooseSegment]].concat(this.o.segments.map(function (s) { return [String(s[0]), s[1]]; }));
    parts.appendChild(bind(select("segment", this.t.chooseSegment, options, c.segment),
                           function (node) { c.segment = node.value ? Number(node.value) : null; }, self));
  };

  // -- the server's field errors on the rows they name ------------------------------------------------
  function startsAt(field, path) {
    return field === path || field.indexOf(path + ".") === 0 || field.indexOf(path + "[") === 0;
  }

  function markErrors(scope) {
    document.querySelectorAll("[data-rule-tree] .has-error").forEach(function (node) {
      node.classList.remove("has-error");
      node.removeAttribute("data-error");
    });
    var paths = document.querySelectorAll("[data-rule-tree] [data-path]");
    scope.querySelectorAll("[data-error-path]").forEach(function (item) {
      var field = item.getAttribute("data-error-path");
      var best = null;
      paths.forEach(function (node) {
        var path = node.getAttribute("data-path");
        if (startsAt(field, path) && (!best || path.length > best.getAttribute("data-path").length)) { best = node; }
      });
      if (best) {
        best.classList.add("has-error");
        best.setAttribute("data-error", item.textContent.trim());
        best.title = item.textContent.trim();
      }
    });
  }

  function start() {
    document.querySelectorAll("[data-rule-builder]").forEach(function (root) {
      if (!root.dataset.ready) { root.dataset.ready = "1"; root.builder = new Builder(root); }
    });
    document.querySelectorAll("[data-reveal]").forEach(function (box) {
      var target = document.getElementById(box.dataset.reveal);
      box.addEventListener("change", function () { target.hidden = !box.checked; });
    });
    var saved = document.getElementById("save-errors");
    if (saved) { markErrors(saved); }
  }

  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target && event.target.id === "live-count") { markErrors(event.target); }
  });
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
