// CleverReach connector: the newsletter checklist (web resource crc_/checklist/checklist.js,
// loaded by crc_/checklist/checklist.html).
//
// One row per newsletter type of the setting cleverreach:newslettertypsettings:typjson, in
// position order, each a radio group of three states: no choice (0), yes (1, a green tick),
// no (2, a red cross). It reads and writes the form's crc_checklist column through the form
// context that the form script (crc_/checklist/form.js) passes in with setClientApiContext; a
// change rewrites only the changed entry (state, modifiedby = the user's name, modifiedon = UTC
// now), keeps everything else of the stored JSON, and leaves saving to the user.
//
// On campaign, campaign activity and marketing list forms it also shows the sync flag, group
// id, status, last sync, last error and a "Resync now" button; on marketing lists, for holders
// of the role "CleverReach List Sync", the retroactive sync with its progress.
//
// Client API used (Unified Interface): formContext.getAttribute / getControl, attribute
// getValue / setValue / getIsDirty / setSubmitMode / getSubmitMode / addOnChange /
// fireOnChange, control getDisabled, formContext.ui.getFormType, formContext.data.addOnLoad,
// Xrm.Utility.getGlobalContext().userSettings, Xrm.WebApi.retrieveMultipleRecords.
(function () {
  "use strict";

  const CHECKLIST = "crc_checklist";
  const SYNC_FLAG = "crc_syncwithcleverreach";
  const GROUP_ID = "crc_groupid";
  const RESYNC = "crc_resync";
  const SYNC_STATUS = "crc_syncstatus";
  const LAST_SYNC = "crc_lastsync";
  const LAST_ERROR = "crc_lasterror";
  const RETROACTIVE = "crc_retroactivesync";
  const RETROACTIVE_JSON = "crc_retroactivesyncjson";
  const RETROACTIVE_PROGRESS = "crc_retroactiveprogress";

  const TYPES_KEY = "cleverreach:newslettertypsettings:typjson";
  // The seed product's misspelled key segments, read as the proper ones (as the connector does).
  const SEGMENT_ALIASES = {
    bouncestettings: "bouncesettings",
    deletedisablestynchronization: "deletedisablesynchronization",
    groupsetting: "groupsettings",
    newslettersettings: "newslettertypsettings",
    acesstoken: "accesstoken",
  };
  // The connector's default newsletter types (README "Settings").
  const DEFAULT_TYPES = [
    { id: 0, description: "Information", position: 1 },
    { id: 1, description: "Werbung und Spiele", position: 2 },
  ];
  const LIST_SYNC_ROLE = "CleverReach List Sync";
  const READER_ROLE = "CleverReach Checklist User";
  const GERMAN = 1031;
  // formContext.ui.getFormType(): 3 read only, 4 disabled, 6 bulk edit.
  const READ_ONLY_FORMS = [3, 4, 6];

  const TEXTS = {
    en: {
      locale: "en-GB",
      title: "Newsletters",
      states: ["No choice", "Yes", "No"],
      unchanged: "Unchanged",
      readOnly: "Read only: the record or this field cannot be changed here.",
      waiting: "Loading…",
      notConnected:
        "The form did not connect this control. Add the form library crc_/checklist/form.js and the OnLoad handler CleverReach.Checklist.onLoad with “Pass execution context as first parameter”.",
      noField: "This form lacks the field crc_checklist (it may be hidden). Add it to the form.",
      typesUnreadable: (reason) =>
        `The newsletter types cannot be read: ${reason}. People who use this control need read access to the CleverReach settings (security role “${READER_ROLE}”).`,
      typesInvalid: (key, reason) =>
        `The newsletter types cannot be shown: the setting ${key} ${reason}. The checklist was left as it is; ask your administrator to correct the setting.`,
      typesConflict: (a, b) => `the rows ${a} and ${b} say different things`,
      checklistInvalid: (reason) =>
        `This record's newsletter checklist cannot be read: ${reason}. It was left as it is; ask your administrator to correct it.`,
      keptOthers: (n) =>
        n === 1
          ? "1 entry for a newsletter type that is no longer configured is kept."
          : `${n} entries for newsletter types that are no longer configured are kept.`,
      sync: "CleverReach",
      syncFlag: "Sync with CleverReach",
      group: "Group id",
      status: "Sync status",
      lastSync: "Last sync",
      lastError: "Last error",
      none: "—",
      resync: "Resync now",
      resyncHint: "Compares the whole group once, when the record is saved.",
      resyncRequested: "Resync requested: it runs when the record is saved.",
      resyncPending: "Resync requested: the connector is working on it.",
      resyncNeedsSync: "Turn sync on first.",
      retroactive: "Retroactive sync",
      retroactiveHint:
        "Overwrites the newsletter choices of every member of this list. A “no” is never turned into a “yes”.",
      useListChecklist: "Use this list's own checklist",
      startRetroactive: "Start retroactive sync",
      retroactiveRequested: "Retroactive sync requested: it starts when the record is saved.",
      retroactivePending: "Retroactive sync requested.",
      progress: "Progress",
      retroactiveInvalid: (reason) => `The retroactive sync checklist cannot be read: ${reason}.`,
      reasons: {
        json: (m) => `is not valid JSON (${m})`,
        notArray: "is not a JSON array",
        emptyTypes: "lists no newsletter type; at least one is needed",
        typeNotObject: (n) => `names as newsletter type ${n} something that is not a JSON object`,
        typeNoId: (n) => `has no whole-number id for newsletter type ${n}`,
        typeDuplicate: (id) => `uses the id ${id} for more than one newsletter type`,
        typeNoDescription: (n, id) => `has no description for newsletter type ${n} (id ${id})`,
        typeBadPosition: (n, id) => `has a position that is not a whole number for newsletter type ${n} (id ${id})`,
        entryNotObject: (n) => `entry ${n} is not a JSON object`,
        entryNoId: (n) => `entry ${n} has no whole-number id`,
        entryBadState: (n, id) => `entry ${n} (newsletter type ${id}) has a state that is not 0, 1 or 2`,
        entryBadText: (n, id, field) => `entry ${n} (newsletter type ${id}) has a ${field} that is not text`,
        entryBadPosition: (n, id) => `entry ${n} (newsletter type ${id}) has a position that is not a whole number`,
        entryDuplicate: (id) => `newsletter type ${id} appears more than once`,
      },
    },
    de: {
      locale: "de-DE",
      title: "Newsletter",
      states: ["Keine Auswahl", "Ja", "Nein"],
      unchanged: "Unverändert",
      readOnly: "Schreibgeschützt: Der Datensatz oder dieses Feld kann hier nicht geändert werden.",
      waiting: "Wird geladen…",
      notConnected:
        "Das Formular hat dieses Steuerelement nicht verbunden. Fügen Sie die Formularbibliothek crc_/checklist/form.js und den OnLoad-Handler CleverReach.Checklist.onLoad mit „Ausführungskontext als ersten Parameter übergeben“ hinzu.",
      noField: "Diesem Formular fehlt das Feld crc_checklist (es darf ausgeblendet sein). Fügen Sie es dem Formular hinzu.",
      typesUnreadable: (reason) =>
        `Die Newslettertypen können nicht gelesen werden: ${reason}. Wer dieses Steuerelement nutzt, braucht Lesezugriff auf die CleverReach-Einstellungen (Sicherheitsrolle „${READER_ROLE}“).`,
      typesInvalid: (key, reason) =>
        `Die Newslettertypen können nicht angezeigt werden: Die Einstellung ${key} ${reason}. Die Checkliste bleibt unverändert; bitten Sie Ihre Administration, die Einstellung zu korrigieren.`,
      typesConflict: (a, b) => `steht in den Zeilen ${a} und ${b} unterschiedlich`,
      checklistInvalid: (reason) =>
        `Die Newsletter-Checkliste dieses Datensatzes kann nicht gelesen werden: ${reason}. Sie bleibt unverändert; bitten Sie Ihre Administration, sie zu korrigieren.`,
      keptOthers: (n) =>
        n === 1
          ? "1 Eintrag für einen nicht mehr konfigurierten Newslettertyp bleibt erhalten."
          : `${n} Einträge für nicht mehr konfigurierte Newslettertypen bleiben erhalten.`,
      sync: "CleverReach",
      syncFlag: "Mit CleverReach synchronisieren",
      group: "Gruppen-ID",
      status: "Synchronisierungsstatus",
      lastSync: "Letzte Synchronisierung",
      lastError: "Letzter Fehler",
      none: "—",
      resync: "Jetzt neu synchronisieren",
      resyncHint: "Gleicht die ganze Gruppe einmal ab, sobald der Datensatz gespeichert wird.",
      resyncRequested: "Neusynchronisierung angefordert: Sie läuft, sobald der Datensatz gespeichert wird.",
      resyncPending: "Neusynchronisierung angefordert: Der Connector arbeitet daran.",
      resyncNeedsSync: "Schalten Sie zuerst die Synchronisierung ein.",
      retroactive: "Rückwirkende Synchronisierung",
      retroactiveHint:
        "Überschreibt die Newsletter-Auswahl aller Mitglieder dieser Liste. Ein „Nein“ wird nie zu einem „Ja“.",
      useListChecklist: "Die Checkliste dieser Liste verwenden",
      startRetroactive: "Rückwirkende Synchronisierung starten",
      retroactiveRequested: "Rückwirkende Synchronisierung angefordert: Sie beginnt, sobald der Datensatz gespeichert wird.",
      retroactivePending: "Rückwirkende Synchronisierung angefordert.",
      progress: "Fortschritt",
      retroactiveInvalid: (reason) => `Die Checkliste der rückwirkenden Synchronisierung kann nicht gelesen werden: ${reason}.`,
      reasons: {
        json: (m) => `ist kein gültiges JSON (${m})`,
        notArray: "ist kein JSON-Array",
        emptyTypes: "nennt keinen Newslettertyp; mindestens einer ist nötig",
        typeNotObject: (n) => `enthält als Newslettertyp ${n} kein JSON-Objekt`,
        typeNoId: (n) => `hat für Newslettertyp ${n} keine ganzzahlige ID`,
        typeDuplicate: (id) => `verwendet die ID ${id} für mehr als einen Newslettertyp`,
        typeNoDescription: (n, id) => `hat für Newslettertyp ${n} (ID ${id}) keine Beschreibung`,
        typeBadPosition: (n, id) => `hat für Newslettertyp ${n} (ID ${id}) eine Position, die keine ganze Zahl ist`,
        entryNotObject: (n) => `Eintrag ${n} ist kein JSON-Objekt`,
        entryNoId: (n) => `Eintrag ${n} hat keine ganzzahlige ID`,
        entryBadState: (n, id) => `Eintrag ${n} (Newslettertyp ${id}) hat einen Status, der nicht 0, 1 oder 2 ist`,
        entryBadText: (n, id, field) => `Eintrag ${n} (Newslettertyp ${id}) hat bei ${field} keinen Text`,
        entryBadPosition: (n, id) => `Eintrag ${n} (Newslettertyp ${id}) hat eine Position, die keine ganze Zahl ist`,
        entryDuplicate: (id) => `Newslettertyp ${id} kommt mehr als einmal vor`,
      },
    },
  };

  // ----- the rules the connector applies (shared/src/domain: settings, checklist) ----------

  /** A whole number, also written as a numeric string; otherwise null. */
  function wholeNumber(value) {
    if (typeof value === "number" && Number.isSafeInteger(value)) {
      return value;
    }
    if (typeof value === "string" && /^\s*[+-]?\d+\s*$/.test(value)) {
      const n = Number(value.trim());
      return Number.isSafeInteger(n) ? n : null;
    }
    return null;
  }

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  /** A settings key as the connector reads it: lower case, trimmed, aliases replaced. */
  function canonicalKey(raw) {
    return String(raw)
      .trim()
      .toLowerCase()
      .split(":")
      .map((segment) => {
        const s = segment.trim();
        return SEGMENT_ALIASES[s] || s;
      })
      .join(":");
  }

  /** Parses typjson: {types} in position order, or {reason}. */
  function parseTypes(text, reasons) {
    let json;
    try {
      json = JSON.parse(text);
    } catch (e) {
      return { reason: reasons.json(e.message) };
    }
    if (!Array.isArray(json)) {
      return { reason: reasons.notArray };
    }
    if (json.length === 0) {
      return { reason: reasons.emptyTypes };
    }
    const types = [];
    const ids = new Set();
    for (let i = 0; i < json.length; i++) {
      const n = i + 1;
      const item = json[i];
      if (!isObject(item)) {
        return { reason: reasons.typeNotObject(n) };
      }
      const id = wholeNumber(item.id);
      if (id === null) {
        return { reason: reasons.typeNoId(n) };
      }
      if (ids.has(id)) {
        return { reason: reasons.typeDuplicate(id) };
      }
      ids.add(id);
      const description = typeof item.description === "string" ? item.description.trim() : "";
      if (!description) {
        return { reason: reasons.typeNoDescription(n, id) };
      }
      let position = n;
      if (item.position !== undefined && item.position !== null) {
        position = wholeNumber(item.position);
        if (position === null) {
          return { reason: reasons.typeBadPosition(n, id) };
        }
      }
      types.push({ id, description, position });
    }
    // Stable: types sharing a position keep their configured order.
    return { types: types.map((t, i) => [t, i]).sort((a, b) => a[0].position - b[0].position || a[1] - b[1]).map((p) => p[0]) };
  }

  /** Parses a stored checklist: {entries: the objects as stored, with their id and state} or {reason}. */
  function parseChecklist(value, reasons) {
    if (value === null || value === undefined || String(value).trim() === "") {
      return { entries: [] };
    }
    let json;
    try {
      json = JSON.parse(value);
    } catch (e) {
      return { reason: reasons.json(e.message) };
    }
    if (json === null) {
      return { entries: [] };
    }
    if (!Array.isArray(json)) {
      return { reason: reasons.notArray };
    }
    const entries = [];
    const ids = new Set();
    for (let i = 0; i < json.length; i++) {
      const n = i + 1;
      const raw = json[i];
      if (!isObject(raw)) {
        return { reason: reasons.entryNotObject(n) };
      }
      const id = wholeNumber(raw.id);
      if (id === null) {
        return { reason: reasons.entryNoId(n) };
      }
      const state = wholeNumber(raw.state);
      if (state === null || state < 0 || state > 2) {
        return { reason: reasons.entryBadState(n, id) };
      }
      for (const field of ["description", "modifiedby", "modifiedon"]) {
        const v = raw[field];
        if (v !== undefined && v !== null && typeof v !== "string") {
          return { reason: reasons.entryBadText(n, id, field) };
        }
      }
      if (raw.position !== undefined && raw.position !== null && wholeNumber(raw.position) === null) {
        return { reason: reasons.entryBadPosition(n, id) };
      }
      if (ids.has(id)) {
        return { reason: reasons.entryDuplicate(id) };
      }
      ids.add(id);
      entries.push({ raw, id, state });
    }
    return { entries, list: json };
  }

  /** Now in UTC, ISO 8601, whole seconds (as the connector writes modifiedon). */
  function utcNow() {
    return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  /**
   * The stored checklist with one type set to `state` by `who`: only that entry changes (or is
   * appended for a type without one); unknown fields and other entries stay as stored.
   * Returns the new JSON text, or null when nothing changes.
   */
  function withChoice(value, type, state, who, reasons) {
    const parsed = parseChecklist(value, reasons);
    if (parsed.reason) {
      return null;
    }
    const list = parsed.list || [];
    const found = parsed.entries.find((e) => e.id === type.id);
    if (found) {
      if (found.state === state) {
        return null;
      }
      found.raw.state = state;
      found.raw.modifiedby = who;
      found.raw.modifiedon = utcNow();
    } else {
      if (state === 0) {
        return null; // no entry already means no choice
      }
      list.push({
        id: type.id,
        state,
        description: type.description,
        modifiedby: who,
        modifiedon: utcNow(),
        position: type.position,
      });
    }
    return JSON.stringify(list);
  }

  // ----- the page -----------------------------------------------------------------------

  let xrm = null;
  let form = null;
  let texts = TEXTS.en;
  let user = { name: "", roles: [] };
  let types = null; // {types} or {unreadable} or {invalid}
  let built = ""; // what the page shows now (to rebuild only when that changes)

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === false || value === null || value === undefined) {
        continue;
      }
      if (name === "text") {
        node.textContent = value;
      } else if (name.startsWith("on")) {
        node.addEventListener(name.slice(2), value);
      } else {
        node.setAttribute(name, value === true ? "" : String(value));
      }
    }
    for (const c of children) {
      if (c) {
        node.appendChild(c);
      }
    }
    return node;
  }

  function root() {
    return document.getElementById("crc-root");
  }

  function attribute(name) {
    return form ? form.getAttribute(name) : null;
  }

  function value(name) {
    const a = attribute(name);
    return a ? a.getValue() : null;
  }

  /** The form or the column cannot be changed here. */
  function readOnly(column) {
    if (READ_ONLY_FORMS.includes(form.ui.getFormType())) {
      return true;
    }
    const a = attribute(column);
    if (!a) {
      return true;
    }
    if (typeof a.getSubmitMode === "function" && a.getSubmitMode() === "never") {
      return true;
    }
    const control = form.getControl(column);
    return !!(control && control.getDisabled());
  }

  function hasRole(name) {
    return user.roles.some((r) => r && String(r.name).toLowerCase() === name.toLowerCase());
  }

  function set(name, newValue, always) {
    const a = attribute(name);
    if (!a) {
      return;
    }
    a.setValue(newValue);
    if (always) {
      a.setSubmitMode("always");
    }
    a.fireOnChange();
  }

  /** One radio group: a row per type with three states. */
  function stateGroup(prefix, type, labels, disabled, onPick) {
    // Stable ids, so that focus can be put back after a rebuild.
    const id = `${prefix}-${type.id}`;
    const group = el("div", {
      class: "crc-type",
      role: "radiogroup",
      "aria-labelledby": `${id}-label`,
      "data-type": type.id,
    });
    group.appendChild(el("span", { id: `${id}-label`, class: "crc-type-name", text: type.description }));
    const choices = el("div", { class: "crc-choices" });
    [0, 1, 2].forEach((state) => {
      const input = el("input", {
        type: "radio",
        name: id,
        value: state,
        id: `${id}-${state}`,
        disabled,
        onchange: () => onPick(type, state),
      });
      const mark = el("span", { class: `crc-mark crc-mark-${state}`, "aria-hidden": "true" });
      choices.appendChild(
        el(
          "label",
          { class: `crc-choice crc-choice-${state}`, for: `${id}-${state}` },
          input,
          mark,
          el("span", { class: "crc-choice-text", text: labels[state] }),
        ),
      );
    });
    group.appendChild(choices);
    return group;
  }

  /** Checks the radio of each type's stored state. */
  function showStates(container, entries) {
    container.querySelectorAll(".crc-type").forEach((group) => {
      const id = Number(group.getAttribute("data-type"));
      const entry = entries.find((e) => e.id === id);
      const state = entry ? entry.state : 0;
      group.querySelectorAll("input[type=radio]").forEach((input) => {
        input.checked = Number(input.value) === state;
      });
    });
  }

  function message(text, kind) {
    return el("p", { class: `crc-message crc-${kind || "error"}`, role: kind === "note" ? null : "alert", text });
  }

  function typesMessage() {
    if (types.unreadable !== undefined) {
      return texts.typesUnreadable(types.unreadable);
    }
    if (types.invalid) {
      return texts.typesInvalid(types.invalid.key, types.invalid.reason);
    }
    return null;
  }

  // The checklist part.
  function checklistSection() {
    const section = el("section", { class: "crc-section", "aria-labelledby": "crc-title" });
    section.appendChild(el("h2", { id: "crc-title", class: "crc-title", text: texts.title }));
    if (!attribute(CHECKLIST)) {
      section.appendChild(message(texts.noField));
      return { section, key: "nofield" };
    }
    const problem = typesMessage();
    if (problem) {
      section.appendChild(message(problem));
      return { section, key: `types:${problem}` };
    }
    const parsed = parseChecklist(value(CHECKLIST), texts.reasons);
    if (parsed.reason) {
      section.appendChild(message(texts.checklistInvalid(parsed.reason)));
      return { section, key: `invalid:${parsed.reason}` };
    }
    const locked = readOnly(CHECKLIST);
    if (locked) {
      section.appendChild(message(texts.readOnly, "note"));
    }
    const list = el("div", { class: "crc-types", id: "crc-checklist" });
    for (const type of types.types) {
      list.appendChild(stateGroup("crc-t", type, texts.states, locked, pickChecklist));
    }
    section.appendChild(list);
    const others = parsed.entries.filter((e) => !types.types.some((t) => t.id === e.id)).length;
    if (others > 0) {
      section.appendChild(message(texts.keptOthers(others), "note"));
    }
    showStates(list, parsed.entries);
    return { section, key: `list:${locked}:${others}`, update: () => {
      const now = parseChecklist(value(CHECKLIST), texts.reasons);
      if (now.reason) {
        return false;
      }
      showStates(list, now.entries);
      return true;
    } };
  }

  function pickChecklist(type, state) {
    if (readOnly(CHECKLIST)) {
      render();
      return;
    }
    const next = withChoice(value(CHECKLIST), type, state, user.name, texts.reasons);
    if (next !== null) {
      set(CHECKLIST, next, false);
    }
    render();
  }

  function formatDate(v) {
    if (v === null || v === undefined || v === "") {
      return texts.none;
    }
    const d = v instanceof Date ? v : new Date(v);
    return Number.isNaN(d.getTime()) ? String(v) : d.toLocaleString(texts.locale);
  }

  function row(label, content, cls) {
    return el("div", { class: `crc-field ${cls || ""}` }, el("dt", { text: label }), el("dd", { text: content }));
  }

  // The sync part (campaign, campaign activity, marketing list).
  function syncSection() {
    if (!attribute(SYNC_FLAG)) {
      return null;
    }
    const on = value(SYNC_FLAG) === true;
    const resync = value(RESYNC) === true;
    const resyncAttribute = attribute(RESYNC);
    const resyncRequested = resync && resyncAttribute && resyncAttribute.getIsDirty && resyncAttribute.getIsDirty();
    const flagLocked = readOnly(SYNC_FLAG);
    const section = el("section", { class: "crc-section crc-sync", "aria-labelledby": "crc-sync-title" });
    section.appendChild(el("h2", { id: "crc-sync-title", class: "crc-title", text: texts.sync }));
    section.appendChild(
      el(
        "div",
        { class: "crc-switch-row" },
        el("button", {
          type: "button",
          id: "crc-sync-flag",
          class: "crc-switch",
          role: "switch",
          "aria-checked": on ? "true" : "false",
          disabled: flagLocked,
          onclick: () => {
            set(SYNC_FLAG, !on, false);
            render();
          },
        }, el("span", { class: "crc-switch-knob", "aria-hidden": "true" }), el("span", { class: "crc-switch-text", text: texts.syncFlag })),
      ),
    );
    const fields = el("dl", { class: "crc-fields" });
    fields.appendChild(row(texts.group, value(GROUP_ID) || texts.none, "crc-group"));
    fields.appendChild(row(texts.status, value(SYNC_STATUS) || texts.none, "crc-status"));
    fields.appendChild(row(texts.lastSync, formatDate(value(LAST_SYNC)), "crc-last-sync"));
    section.appendChild(fields);
    const error = value(LAST_ERROR);
    if (error) {
      section.appendChild(
        el("div", { class: "crc-last-error", id: "crc-last-error", role: "status" },
          el("strong", { text: `${texts.lastError}: ` }), el("span", { text: error })),
      );
    }
    const resyncLocked = readOnly(RESYNC) || !on || resync;
    const note = resync ? (resyncRequested ? texts.resyncRequested : texts.resyncPending) : on ? texts.resyncHint : texts.resyncNeedsSync;
    section.appendChild(
      el(
        "div",
        { class: "crc-actions" },
        el("button", {
          type: "button",
          id: "crc-resync",
          class: "crc-button",
          disabled: resyncLocked,
          "aria-describedby": "crc-resync-note",
          text: texts.resync,
          onclick: () => {
            set(RESYNC, true, true);
            render();
          },
        }),
        el("span", { id: "crc-resync-note", class: "crc-hint", text: note }),
      ),
    );
    const retro = retroactiveSection();
    if (retro) {
      section.appendChild(retro.section);
    }
    return {
      section,
      key: `sync:${on}:${resync}:${resyncRequested}:${flagLocked}:${value(GROUP_ID)}:${value(SYNC_STATUS)}:${String(value(LAST_SYNC))}:${error}:${retro ? retro.key : ""}`,
    };
  }

  // The retroactive sync (marketing lists, holders of the list-sync role).
  function retroactiveSection() {
    if (!attribute(RETROACTIVE) || !attribute(RETROACTIVE_JSON) || !hasRole(LIST_SYNC_ROLE)) {
      return null;
    }
    const section = el("div", { class: "crc-retroactive", role: "group", "aria-labelledby": "crc-retro-title" });
    section.appendChild(el("h3", { id: "crc-retro-title", class: "crc-subtitle", text: texts.retroactive }));
    section.appendChild(el("p", { class: "crc-hint", text: texts.retroactiveHint }));
    const progress = value(RETROACTIVE_PROGRESS);
    if (progress) {
      section.appendChild(el("dl", { class: "crc-fields" }, row(texts.progress, progress, "crc-progress")));
    }
    const requested = value(RETROACTIVE) === true;
    const locked = readOnly(RETROACTIVE_JSON) || requested;
    const stored = value(RETROACTIVE_JSON);
    const useList = stored === null || stored === undefined || String(stored).trim() === "";
    let typesKey = "";
    if (types.types) {
      const parsed = parseChecklist(stored, texts.reasons);
      if (parsed.reason) {
        section.appendChild(message(texts.retroactiveInvalid(parsed.reason)));
        typesKey = `invalid:${parsed.reason}`;
      } else {
        const checkbox = el("input", {
          type: "checkbox",
          id: "crc-retro-uselist",
          checked: useList,
          disabled: locked,
          onchange: (event) => {
            set(RETROACTIVE_JSON, event.target.checked ? null : "[]", false);
            render();
          },
        });
        section.appendChild(el("div", { class: "crc-check" }, checkbox, el("label", { for: "crc-retro-uselist", text: texts.useListChecklist })));
        if (!useList) {
          const list = el("div", { class: "crc-types", id: "crc-retro-types" });
          for (const type of types.types) {
            list.appendChild(
              stateGroup("crc-r", type, [texts.unchanged, texts.states[1], texts.states[2]], locked, (t, state) => {
                const next = withChoice(value(RETROACTIVE_JSON), t, state, user.name, texts.reasons);
                if (next !== null) {
                  set(RETROACTIVE_JSON, next, false);
                }
                render();
              }),
            );
          }
          showStates(list, parsed.entries);
          section.appendChild(list);
        }
        typesKey = `${useList}:${JSON.stringify(parsed.entries.map((e) => [e.id, e.state]))}`;
      }
    }
    const retroLocked = readOnly(RETROACTIVE) || requested;
    section.appendChild(
      el(
        "div",
        { class: "crc-actions" },
        el("button", {
          type: "button",
          id: "crc-retro-start",
          class: "crc-button",
          disabled: retroLocked,
          text: texts.startRetroactive,
          onclick: () => {
            set(RETROACTIVE, true, true);
            render();
          },
        }),
        requested ? el("span", { class: "crc-hint", text: texts.retroactiveRequested }) : null,
      ),
    );
    return { section, key: `retro:${requested}:${locked}:${progress}:${typesKey}` };
  }

  let current = { key: "", update: null };

  /** Shows the form's current state; rebuilds only when what is shown changes shape. */
  function render() {
    const target = root();
    if (!target || !form || !types) {
      return;
    }
    const checklist = checklistSection();
    const sync = syncSection();
    const key = `${checklist.key}|${sync ? sync.key : ""}`;
    if (key === built && current.update && current.update()) {
      return; // only the checked states changed: keep focus where it is
    }
    const focused = document.activeElement && document.activeElement.id;
    target.replaceChildren(checklist.section, ...(sync ? [sync.section] : []));
    built = key;
    current = { key, update: checklist.update || null };
    if (focused) {
      const again = document.getElementById(focused);
      if (again) {
        again.focus();
      }
    }
  }

  /** The newsletter types from the settings table (default when there is no row). */
  async function loadTypes() {
    let rows;
    try {
      const result = await xrm.WebApi.retrieveMultipleRecords(
        "crc_setting",
        "?$select=crc_key,crc_value&$filter=contains(crc_key,'typjson')",
      );
      rows = result.entities || [];
    } catch (e) {
      return { unreadable: (e && e.message) || String(e) };
    }
    const mine = rows
      .filter((r) => canonicalKey(r.crc_key || "") === TYPES_KEY)
      .filter((r) => typeof r.crc_value === "string" && r.crc_value.trim() !== "");
    if (mine.length === 0) {
      return { types: DEFAULT_TYPES };
    }
    let first = null;
    for (const r of mine) {
      const parsed = parseTypes(r.crc_value.trim(), texts.reasons);
      if (parsed.reason) {
        return { invalid: { key: String(r.crc_key).trim(), reason: parsed.reason } };
      }
      if (first && JSON.stringify(first.types) !== JSON.stringify(parsed.types)) {
        return {
          invalid: { key: TYPES_KEY, reason: texts.typesConflict(first.key, String(r.crc_key).trim()) },
        };
      }
      first = first || { key: String(r.crc_key).trim(), types: parsed.types };
    }
    return { types: first.types };
  }

  function readUser() {
    const settings = xrm.Utility.getGlobalContext().userSettings;
    const roles = [];
    if (settings.roles && typeof settings.roles.forEach === "function") {
      settings.roles.forEach((r) => roles.push(r));
    }
    return { name: settings.userName || "", roles, language: settings.languageId };
  }

  let started = null;
  let waiting = null;

  /** Called by the form script with the Xrm object and the form context. */
  async function setClientApiContext(xrmObject, formContext) {
    if (started === formContext) {
      render();
      return;
    }
    started = formContext;
    clearTimeout(waiting);
    xrm = xrmObject;
    form = formContext;
    const me = readUser();
    user = { name: me.name, roles: me.roles };
    texts = me.language === GERMAN ? TEXTS.de : TEXTS.en;
    document.documentElement.lang = me.language === GERMAN ? "de" : "en";
    const waitingNote = document.getElementById("crc-waiting");
    if (waitingNote) {
      waitingNote.textContent = texts.waiting;
    }
    const watched = [CHECKLIST, SYNC_FLAG, GROUP_ID, RESYNC, SYNC_STATUS, LAST_SYNC, LAST_ERROR, RETROACTIVE, RETROACTIVE_JSON, RETROACTIVE_PROGRESS];
    for (const name of watched) {
      const a = attribute(name);
      if (a) {
        a.addOnChange(() => render());
      }
    }
    // After a save the form reloads its data: show what was saved.
    if (form.data && typeof form.data.addOnLoad === "function") {
      form.data.addOnLoad(() => render());
    }
    types = await loadTypes();
    built = "";
    render();
  }

  window.setClientApiContext = setClientApiContext;
  // Exposed for checks: the same rules the page applies.
  window.CleverReachChecklist = { parseTypes, parseChecklist, withChoice, canonicalKey, TEXTS };

  // Without a form script the page would wait forever: say what is missing.
  window.addEventListener("DOMContentLoaded", () => {
    waiting = setTimeout(() => {
      if (!form) {
        const target = root();
        if (target) {
          target.replaceChildren(message(TEXTS.en.notConnected));
        }
      }
    }, 15000);
  });
})();
