// The sandbox's stand-in for the Unified Interface form runtime (tests/src/form_page.rs): it
// opens a record's published main form, gives scripts the documented Client API, and saves
// changed columns through the Web API. It is test support: only what the checklist control
// and its form script use, behaving as Microsoft documents it.
(() => {
  "use strict";

  const params = new URLSearchParams(location.search);
  const entityName = params.get("etn");
  const recordId = (params.get("id") || "").replace(/[{}]/g, "").toLowerCase();
  const languageId = Number(params.get("lang") || 1033);
  const disabledColumns = new Set(
    (params.get("disabled") || "")
      .split(",")
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean),
  );
  const API = "/api/data/v9.2/";
  const WEB_RESOURCE_CONTROL = "{9FDF5F91-88B1-47F4-AD53-C11EFC01A01D}";
  const errors = [];

  function reportError(text) {
    errors.push(text);
    document.getElementById("form-errors").textContent = errors.join("\n");
  }

  async function api(method, path, body, headers) {
    const init = {
      method,
      headers: Object.assign(
        { Accept: "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0" },
        headers || {},
      ),
    };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json; charset=utf-8";
    }
    const response = await fetch(API + path, init);
    const text = await response.text();
    const json = text ? JSON.parse(text) : null;
    if (!response.ok) {
      const error = new Error((json && json.error && json.error.message) || `HTTP ${response.status}`);
      error.errorCode = json && json.error && json.error.code ? parseInt(json.error.code, 16) : response.status;
      throw error;
    }
    return json;
  }

  /** Xrm's Collection. */
  class Collection {
    constructor(items) {
      this.items = items;
    }
    forEach(f) {
      this.items.forEach((item, i) => f(item, i));
    }
    get(which) {
      if (typeof which === "number") return this.items[which] || null;
      if (typeof which === "function") return this.items.filter(which);
      if (typeof which === "string") return this.items.find((x) => x.getName && x.getName() === which) || null;
      return this.items.slice();
    }
    getLength() {
      return this.items.length;
    }
  }

  const sets = new Map();
  async function entitySet(logicalName) {
    if (!sets.has(logicalName)) {
      const r = await api(
        "GET",
        `EntityDefinitions?$select=EntitySetName,LogicalName,PrimaryIdAttribute,PrimaryNameAttribute&$filter=LogicalName eq '${logicalName}'`,
      );
      if (!r.value.length) throw new Error(`no table ${logicalName}`);
      sets.set(logicalName, r.value[0]);
    }
    return sets.get(logicalName);
  }

  const TYPES = {
    BooleanType: "boolean",
    DateTimeType: "datetime",
    MemoType: "memo",
    StringType: "string",
    IntegerType: "integer",
    PicklistType: "optionset",
    StateType: "optionset",
    StatusType: "optionset",
    LookupType: "lookup",
    CustomerType: "lookup",
    OwnerType: "lookup",
  };

  let formType = 2;
  const attributes = new Map();
  const controls = new Map();
  const dataOnLoad = [];

  function same(a, b) {
    if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
    return a === b;
  }

  class Attribute {
    constructor(name, type) {
      this.name = name;
      this.type = TYPES[type] || "string";
      this.value = null;
      this.dirty = false;
      this.submitMode = "dirty";
      this.handlers = [];
    }
    getName() { return this.name; }
    getAttributeType() { return this.type; }
    getValue() { return this.value; }
    // As documented: it does not run OnChange handlers (fireOnChange does).
    setValue(value) {
      if (!same(this.value, value)) {
        this.value = value;
        this.dirty = true;
        showState();
      }
    }
    getIsDirty() { return this.dirty; }
    setSubmitMode(mode) {
      if (!["always", "never", "dirty"].includes(mode)) throw new Error(`invalid submit mode '${mode}'`);
      this.submitMode = mode;
    }
    getSubmitMode() { return this.submitMode; }
    addOnChange(handler) {
      if (typeof handler !== "function") throw new Error("addOnChange needs a function");
      this.handlers.push(handler);
    }
    removeOnChange(handler) { this.handlers = this.handlers.filter((h) => h !== handler); }
    fireOnChange() {
      const context = executionContext(this);
      for (const h of this.handlers.slice()) h(context);
    }
  }

  class FieldControl {
    constructor(id, attribute, visible) {
      this.id = id;
      this.attribute = attribute;
      this.visible = visible;
      this.disabled = false;
    }
    getName() { return this.id; }
    getControlType() { return "standard"; }
    getAttribute() { return this.attribute; }
    getDisabled() { return this.disabled; }
    setDisabled(disabled) { this.disabled = !!disabled; }
    getVisible() { return this.visible; }
  }

  class WebResourceControl {
    constructor(id, frame) {
      this.id = id;
      this.frame = frame;
      this.loaded = new Promise((resolve) => frame.addEventListener("load", resolve, { once: true }));
    }
    getName() { return this.id; }
    getControlType() { return "webresource"; }
    getVisible() { return true; }
    getDisabled() { return false; }
    // Unified Interface only: a promise of the web resource's window.
    getContentWindow() { return this.loaded.then(() => this.frame.contentWindow); }
  }

  const tabs = [];

  const formContext = {
    getAttribute: (name) => (name === undefined ? [...attributes.values()] : attributes.get(String(name).toLowerCase()) || null),
    getControl: (name) => (name === undefined ? [...controls.values()] : controls.get(String(name)) || null),
    ui: {
      getFormType: () => formType,
      tabs: new Collection(tabs),
      controls: new Collection([]),
    },
    data: {
      entity: {
        getId: () => `{${recordId.toUpperCase()}}`,
        getEntityName: () => entityName,
        getIsDirty: () => [...attributes.values()].some((a) => a.dirty),
        attributes: new Collection([]),
      },
      addOnLoad: (handler) => dataOnLoad.push(handler),
      save: () => save(),
    },
  };

  function executionContext(source) {
    return {
      getFormContext: () => formContext,
      getEventSource: () => source,
      getDepth: () => 1,
      getEventArgs: () => null,
    };
  }

  let userSettings = null;

  window.Xrm = {
    Utility: {
      getGlobalContext: () => ({
        userSettings,
        getClientUrl: () => location.origin,
      }),
    },
    WebApi: {
      async retrieveMultipleRecords(entityLogicalName, options, maxPageSize) {
        try {
          const meta = await entitySet(entityLogicalName);
          let prefer = 'odata.include-annotations="*"';
          if (maxPageSize) prefer += `,odata.maxpagesize=${maxPageSize}`;
          const r = await api("GET", meta.EntitySetName + (options || ""), undefined, { Prefer: prefer });
          return { entities: r.value, nextLink: r["@odata.nextLink"] };
        } catch (e) {
          // Rejected with an error object (errorCode, message), as documented.
          throw { errorCode: e.errorCode, message: e.message };
        }
      },
      async retrieveRecord(entityLogicalName, id, options) {
        try {
          const meta = await entitySet(entityLogicalName);
          return await api("GET", `${meta.EntitySetName}(${String(id).replace(/[{}]/g, "")})${options || ""}`);
        } catch (e) {
          throw { errorCode: e.errorCode, message: e.message };
        }
      },
    },
  };

  function showState(text) {
    document.getElementById("save-state").textContent =
      text || ([...attributes.values()].some((a) => a.dirty) ? "Unsaved changes" : "");
  }

  function label(node) {
    const labels = [...node.querySelectorAll(":scope > labels > label")];
    const mine = labels.find((l) => Number(l.getAttribute("languagecode")) === languageId) || labels[0];
    return mine ? mine.getAttribute("description") : "";
  }

  function displayValue(attribute) {
    const v = attribute.getValue();
    if (v === null || v === undefined) return "—";
    if (v instanceof Date) return v.toLocaleString();
    if (Array.isArray(v)) return v.map((x) => x.name || x.id).join(", ");
    return String(v);
  }

  const valueCells = [];

  function renderCell(cell, into) {
    const control = cell.querySelector(":scope > control");
    if (!control) return;
    const id = control.getAttribute("id") || "";
    const classid = (control.getAttribute("classid") || "").toUpperCase();
    if (classid === WEB_RESOURCE_CONTROL) {
      const url = control.querySelector(":scope > parameters > Url");
      const rows = Number(cell.getAttribute("rowspan") || 6);
      const box = document.createElement("div");
      box.className = "webresource";
      const frame = document.createElement("iframe");
      frame.id = `frame-${id}`;
      frame.title = label(cell) || id;
      frame.style.height = `${rows * 38}px`;
      frame.src = `/WebResources/${url ? url.textContent.trim() : ""}`;
      box.appendChild(frame);
      into.appendChild(box);
      controls.set(id, new WebResourceControl(id, frame));
      return;
    }
    const field = (control.getAttribute("datafieldname") || "").toLowerCase();
    const attribute = attributes.get(field);
    if (!attribute) return;
    const visible = cell.getAttribute("visible") !== "false";
    const fieldControl = new FieldControl(id, attribute, visible);
    if (formType === 3 || formType === 4 || disabledColumns.has(field) || control.getAttribute("disabled") === "true") {
      fieldControl.disabled = true;
    }
    controls.set(id, fieldControl);
    if (!visible) return;
    const row = document.createElement("div");
    row.className = "field";
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label(cell) || field;
    const value = document.createElement("span");
    value.className = "value";
    value.dataset.field = field;
    row.append(name, value);
    into.appendChild(row);
    valueCells.push([value, attribute]);
  }

  function renderValues() {
    for (const [cell, attribute] of valueCells) cell.textContent = displayValue(attribute);
  }

  function fieldsOf(form) {
    const names = new Set();
    form.querySelectorAll("control[datafieldname], hiddencontrols > data[datafieldname]").forEach((c) =>
      names.add(c.getAttribute("datafieldname").toLowerCase()),
    );
    return [...names];
  }

  let recordPath = "";
  let types = new Map();

  async function readRecord() {
    const select = [...attributes.keys()]
      .map((name) => (attributes.get(name).type === "lookup" ? `_${name}_value` : name))
      .concat(types.has("statecode") && !attributes.has("statecode") ? ["statecode"] : [])
      .join(",");
    const row = await api("GET", `${recordPath}?$select=${select}`, undefined, {
      Prefer: 'odata.include-annotations="*"',
    });
    for (const attribute of attributes.values()) {
      let v;
      if (attribute.type === "lookup") {
        const id = row[`_${attribute.name}_value`];
        v = id
          ? [{
              id: `{${String(id).toUpperCase()}}`,
              name: row[`_${attribute.name}_value@OData.Community.Display.V1.FormattedValue`] || "",
              entityType: row[`_${attribute.name}_value@Microsoft.Dynamics.CRM.lookuplogicalname`] || "",
            }]
          : null;
      } else {
        v = row[attribute.name];
        if (v === undefined) v = null;
        if (v !== null && attribute.type === "datetime") v = new Date(v);
      }
      attribute.value = v;
      attribute.dirty = false;
    }
    return row;
  }

  async function save() {
    const body = {};
    for (const a of attributes.values()) {
      if (a.submitMode === "never" || a.type === "lookup") continue;
      if (!(a.dirty || a.submitMode === "always")) continue;
      body[a.name] = a.value instanceof Date ? a.value.toISOString() : a.value;
    }
    if (Object.keys(body).length === 0) {
      showState("Nothing to save");
      return;
    }
    showState("Saving…");
    try {
      await api("PATCH", recordPath, body);
    } catch (e) {
      showState(`Not saved: ${e.message}`);
      throw e;
    }
    await readRecord();
    renderValues();
    for (const h of dataOnLoad.slice()) h(executionContext(formContext.data));
    showState("Saved");
  }

  async function loadScript(name) {
    await new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = `/WebResources/${name}`;
      s.onload = resolve;
      s.onerror = () => reject(new Error(`the form library ${name} cannot be loaded`));
      document.head.appendChild(s);
    });
  }

  function resolve(path) {
    return path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), window);
  }

  async function open() {
    const entity = await entitySet(entityName);
    recordPath = `${entity.EntitySetName}(${recordId})`;
    const attrs = await api(
      "GET",
      `EntityDefinitions(LogicalName='${entityName}')/Attributes?$select=LogicalName,AttributeTypeName`,
    );
    types = new Map(attrs.value.map((a) => [a.LogicalName, a.AttributeTypeName ? a.AttributeTypeName.Value : ""]));
    const forms = await api(
      "GET",
      `systemforms?$select=formid,name,formxml,isdefault,formactivationstate&$filter=objecttypecode eq '${entityName}' and type eq 2`,
    );
    const active = forms.value.filter((f) => f.formactivationstate !== 0);
    active.sort((a, b) => (b.isdefault === true) - (a.isdefault === true) || String(a.name).localeCompare(String(b.name)));
    if (!active.length) throw new Error(`${entityName} has no main form`);
    const form = new DOMParser().parseFromString(active[0].formxml, "application/xml").documentElement;
    document.title = `${active[0].name} (sandbox form)`;

    for (const field of fieldsOf(form)) {
      if (types.has(field)) attributes.set(field, new Attribute(field, types.get(field)));
    }
    formContext.data.entity.attributes = new Collection([...attributes.values()]);
    const row = await readRecord();
    if (types.has("statecode") && row.statecode !== undefined && row.statecode !== 0) {
      formType = 3; // an inactive record opens read only
    }
    document.getElementById("record-title").textContent = row[entity.PrimaryNameAttribute] || active[0].name;

    const main = document.getElementById("form");
    for (const tab of form.querySelectorAll(":scope > tabs > tab")) {
      const t = document.createElement("section");
      t.className = "tab";
      t.dataset.tab = tab.getAttribute("name") || "";
      const h = document.createElement("h2");
      h.textContent = label(tab);
      t.appendChild(h);
      const columns = document.createElement("div");
      columns.className = "columns";
      for (const column of tab.querySelectorAll(":scope > columns > column")) {
        const c = document.createElement("div");
        c.className = "column";
        for (const section of column.querySelectorAll(":scope > sections > section")) {
          const s = document.createElement("fieldset");
          s.className = "form-section";
          s.dataset.section = section.getAttribute("name") || "";
          if (section.getAttribute("showlabel") !== "false") {
            const legend = document.createElement("legend");
            legend.textContent = label(section);
            s.appendChild(legend);
          }
          for (const cell of section.querySelectorAll(":scope > rows > row > cell")) renderCell(cell, s);
          c.appendChild(s);
        }
        columns.appendChild(c);
      }
      t.appendChild(columns);
      main.appendChild(t);
      tabs.push({ getName: () => tab.getAttribute("name"), addTabStateChange: () => {} });
    }
    const header = document.getElementById("form-header");
    for (const cell of form.querySelectorAll(":scope > header > rows > row > cell")) renderCell(cell, header);
    formContext.ui.controls = new Collection([...controls.values()]);
    renderValues();

    // Form libraries, in order, then the OnLoad handlers, in order.
    for (const library of form.querySelectorAll(":scope > formLibraries > Library")) {
      await loadScript(library.getAttribute("name"));
    }
    const onload = [...form.querySelectorAll(":scope > events > event")].find(
      (e) => (e.getAttribute("name") || "").toLowerCase() === "onload",
    );
    for (const handler of onload ? onload.querySelectorAll(":scope > Handlers > Handler") : []) {
      if (handler.getAttribute("enabled") === "false") continue;
      const name = handler.getAttribute("functionName");
      const f = resolve(name);
      if (typeof f !== "function") {
        reportError(`Script error: ${name} is not a function`);
        continue;
      }
      try {
        if (handler.getAttribute("passExecutionContext") === "true") {
          f(executionContext(formContext));
        } else {
          f(...(handler.getAttribute("parameters") ? [handler.getAttribute("parameters")] : []));
        }
      } catch (e) {
        reportError(`Script error in ${name}: ${e.message}`);
      }
    }
  }

  async function start() {
    const who = await api("GET", "WhoAmI");
    const me = await api("GET", `systemusers(${who.UserId})?$select=fullname`);
    const roles = await api("GET", `systemusers(${who.UserId})/systemuserroles_association?$select=name,roleid`);
    userSettings = {
      userId: `{${String(who.UserId).toUpperCase()}}`,
      userName: me.fullname,
      languageId,
      roles: new Collection(roles.value.map((r) => ({ id: r.roleid, name: r.name }))),
    };
    await open();
  }

  document.getElementById("save").addEventListener("click", () => save().catch(() => {}));
  const ready = start().catch((e) => {
    reportError(`The form cannot be opened: ${e.message}`);
    throw e;
  });

  // For the tests: the form context, saving, and whether the form finished loading.
  window.crcForm = {
    formContext,
    save,
    ready,
    errors,
    dirty: () => [...attributes.values()].some((a) => a.dirty),
  };
})();
