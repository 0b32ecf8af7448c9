//! Spreadsheets in: a catalog kept in a spreadsheet program is read as its CSV would be. Workbooks are written
//! here with `rust_xlsxwriter`, a writer linkbatch does not use, and read back through calamine.

use rust_xlsxwriter::Workbook;

use crate::support::{World, read_csv};

/// A cell as a spreadsheet holds it.
enum Cell {
    Text(String),
    Number(f64),
}

/// A sheet: its name, header and rows.
type Sheet<'a> = (&'a str, &'a [&'a str], &'a [Vec<Cell>]);

fn workbook(path: &std::path::Path, sheets: &[Sheet<'_>]) {
    let mut book = Workbook::new();
    for (name, header, rows) in sheets {
        let sheet = book.add_worksheet().set_name(*name).unwrap();
        for (col, name) in (0u16..).zip(*header) {
            sheet.write_string(0, col, *name).unwrap();
        }
        for (row, cells) in (1u32..).zip(*rows) {
            for (col, cell) in (0u16..).zip(cells) {
                match cell {
                    Cell::Text(text) => sheet.write_string(row, col, text).unwrap(),
                    Cell::Number(n) => sheet.write_number(row, col, *n).unwrap(),
                };
            }
        }
    }
    book.save(path).unwrap();
}

/// A catalog job over `input`, its amount in major units from the `price` column.
fn job(world: &World, name: &str, input: &std::path::Path, sheet: Option<&str>) -> String {
    let sheet = sheet.map(|s| format!("sheet = \"{s}\"\n")).unwrap_or_default();
    let text = format!(
        "name = \"{name}\"\n[api]\nkind = \"links\"\n[input]\npath = \"{}\"\nkey = \"{{sku}}\"\n{sheet}[link]\n\
         amount = \"{{price}}\"\namount_unit = \"major\"\ncurrency = \"{{currency}}\"\ntitle = \"{{name}}\"\n\
         description = \"{{name}}, from the catalog\"\nmultiple = true\n[output]\ncolumns = [\"sku\", \"stock\"]\n",
        input.display()
    );
    let path = world.path(&format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// 2,000 rows as a workbook (prices as number cells, stock as numbers) and as the CSV a user would export
/// from it: the run from the workbook and the output rebuilt from the CSV are the same bytes.
#[test]
fn a_workbook_gives_the_output_its_csv_gives() {
    let world = World::new();
    let prices = |i: u32| f64::from(100 + i) + [0.0, 0.25, 0.5, 0.99][i as usize % 4];
    let rows: Vec<Vec<Cell>> = (0..2000u32)
        .map(|i| {
            vec![
                Cell::Text(format!("SKU-{i:05}")),
                Cell::Text(format!("Item {i}, \"quoted\"")),
                Cell::Number(prices(i)),
                Cell::Text(if i % 3 == 0 { "usd" } else { "thb" }.into()),
                Cell::Number(f64::from(i % 40)),
            ]
        })
        .collect();
    let header = ["sku", "name", "price", "currency", "stock"];
    let book = world.path("catalog.xlsx");
    workbook(&book, &[("Products", &header, &rows)]);
    let mut csv = csv::Writer::from_path(world.path("catalog.csv")).unwrap();
    csv.write_record(header).unwrap();
    for i in 0..2000u32 {
        let currency = if i % 3 == 0 { "usd" } else { "thb" };
        let record = [format!("SKU-{i:05}"), format!("Item {i}, \"quoted\""), prices(i).to_string(), currency.into()];
        csv.write_record(record.iter().map(String::as_str).chain([(i % 40).to_string().as_str()])).unwrap();
    }
    csv.flush().unwrap();

    let job = job(&world, "sheet", &book, None);
    world.run_job(&job, &["--limit", "none"]).code(0);
    assert_eq!(world.stats().links_held, 2000);
    let from_csv = world.path("from-csv.csv");
    let (ledger, csv_input) = (world.path("ledger.jsonl"), world.path("catalog.csv"));
    world
        .linkbatch(&["export", &job, "--input", csv_input.to_str().unwrap(), "--ledger", ledger.to_str().unwrap()])
        .args(&["--output", from_csv.to_str().unwrap()])
        .code(0);
    assert_eq!(std::fs::read(world.path("out.csv")).unwrap(), std::fs::read(&from_csv).unwrap());
    let rows = read_csv(&from_csv);
    assert_eq!((rows[1]["amount"].as_str(), rows[1]["stock"].as_str()), ("10125", "1"), "101.25 THB, stock 1");
}

/// A number cell is money only when it is exactly a decimal with the currency's places: `1200.505` in THB,
/// and the `0.30000000000000004` that `=0.1+0.2` leaves, are refused naming their cells; a text cell is read
/// as a CSV's; the good rows go on.
#[test]
fn numbers_that_are_not_exact_money_are_refused_naming_the_cell() {
    let world = World::new();
    let row = |sku: &str, price: Cell| {
        vec![
            Cell::Text(sku.into()),
            Cell::Text(format!("Item {sku}")),
            price,
            Cell::Text("thb".into()),
            Cell::Number(1.0),
        ]
    };
    let rows = vec![
        row("A", Cell::Number(1200.505)),
        row("B", Cell::Number(0.1 + 0.2)),
        row("C", Cell::Number(990.0)),
        row("D", Cell::Text("1200.50".into())),
        row("E", Cell::Number(12.5)),
    ];
    let book = world.path("prices.xlsx");
    // The job names the second sheet: the first is someone's notes.
    let notes = vec![vec![Cell::Text("ignore me".into())]];
    workbook(&book, &[("Notes", &["x"], &notes), ("Products", &["sku", "name", "price", "currency", "stock"], &rows)]);
    let job = job(&world, "prices", &book, Some("Products"));
    let validated = world.linkbatch(&["validate", &job, "--ledger", world.path("l.jsonl").to_str().unwrap()]).code(1);
    let rejected: Vec<&str> = validated.stdout.lines().filter(|l| l.trim_start().starts_with("line ")).collect();
    assert_eq!(
        rejected,
        [
            "  line 2: amount: amount `1200.505` has more decimals than thb allows (2); it is never rounded \
             (Products!C2)",
            "  line 3: amount: amount `0.30000000000000004` has more decimals than thb allows (2); it is never \
             rounded (Products!C3)",
        ],
        "{}",
        validated.stdout
    );
    assert!(validated.stdout.contains("  rejected:         2\n"), "{}", validated.stdout);
    world.run_job(&job, &["--limit", "none"]).code(1);
    let out = world.output();
    let amounts: Vec<&str> = out.iter().map(|r| r["amount"].as_str()).collect();
    assert_eq!(amounts, ["", "", "99000", "120050", "1250"]);
}

/// A sheet the job names that the workbook lacks is refused before anything is read or sent, with the
/// sheets it has; `sheet` on a CSV input is refused too.
#[test]
fn a_missing_sheet_is_named_with_the_ones_there_are() {
    let world = World::new();
    let book = world.path("book.xlsx");
    workbook(&book, &[("Products", &["sku", "name", "price", "currency"], &[])]);
    let job = job(&world, "missing", &book, Some("Prices"));
    let refused = world.linkbatch(&["validate", &job]).code(2);
    assert_eq!(
        refused.error(),
        format!("error: input {}: has no sheet `Prices` ([input] sheet); its sheets: Products", book.display())
    );
}

/// The sample workbook (`jobs/catalog-spreadsheet.toml`, prices as number cells, a notes sheet first) makes
/// the links the JSONL catalog makes: the same keys, amounts, currencies, titles and stock.
#[test]
fn the_sample_workbook_is_the_sample_catalog() {
    let world = World::new();
    let seen = |name: &str| -> Vec<[String; 5]> {
        let job = crate::support::JobFile::sample(name).write(&world, &format!("{name}.toml"));
        let output = world.path(&format!("{name}.csv"));
        let ledger = world.path(&format!("{name}.jsonl"));
        let (output, ledger) = (output.to_str().unwrap(), ledger.to_str().unwrap());
        let base = world.base_url();
        world
            .linkbatch(&["run", &job, "--base-url", &base, "--limit", "none", "--output", output, "--ledger", ledger])
            .code(0);
        let fields = |r: &std::collections::BTreeMap<String, String>| {
            ["key", "amount", "currency", "title", "stock"].map(|c| r[c].clone())
        };
        read_csv(std::path::Path::new(output)).iter().map(fields).collect()
    };
    let (sheet, jsonl) = (seen("catalog-spreadsheet"), seen("catalog-import"));
    assert_eq!(sheet.len(), 60);
    assert_eq!(sheet, jsonl);
}

/// An `OpenDocument` spreadsheet (`.ods`), written here as its standard lays it out (a zip of `mimetype`, a
/// manifest and `content.xml`), is read as a workbook is: its number cells exact, a bad one named.
#[test]
fn an_ods_sheet_is_read_as_a_workbook_is() {
    use std::io::Write;
    let world = World::new();
    let cell = |v: &str| match v.parse::<f64>() {
        Ok(_) => format!(
            "<table:table-cell office:value-type=\"float\" office:value=\"{v}\"><text:p>{v}</text:p></table:table-cell>"
        ),
        Err(_) => format!("<table:table-cell office:value-type=\"string\"><text:p>{v}</text:p></table:table-cell>"),
    };
    let rows = [
        ["sku", "name", "price", "currency", "stock"],
        ["A", "Mug", "1200.5", "thb", "3"],
        ["B", "Cup", "0.30000000000000004", "thb", "1"],
    ];
    let table: String = rows
        .iter()
        .flat_map(|r| ["<table:table-row>".to_owned(), r.map(cell).concat(), "</table:table-row>".to_owned()])
        .collect();
    let content = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><office:document-content \
         xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" \
         xmlns:table=\"urn:oasis:names:tc:opendocument:xmlns:table:1.0\" \
         xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\" office:version=\"1.2\"><office:body>\
         <office:spreadsheet><table:table table:name=\"Products\">{table}</table:table></office:spreadsheet>\
         </office:body></office:document-content>"
    );
    let manifest = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><manifest:manifest \
                    xmlns:manifest=\"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0\" manifest:version=\"1.2\">\
                    <manifest:file-entry manifest:full-path=\"/\" \
                    manifest:media-type=\"application/vnd.oasis.opendocument.spreadsheet\"/><manifest:file-entry \
                    manifest:full-path=\"content.xml\" manifest:media-type=\"text/xml\"/></manifest:manifest>";
    let path = world.path("prices.ods");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let deflated = zip::write::SimpleFileOptions::default();
    for (name, text, options) in [
        ("mimetype", "application/vnd.oasis.opendocument.spreadsheet", stored),
        ("META-INF/manifest.xml", manifest, deflated),
        ("content.xml", content.as_str(), deflated),
    ] {
        zip.start_file(name, options).unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
    let job = job(&world, "ods", &path, None);
    let validated = world.linkbatch(&["validate", &job, "--ledger", world.path("l.jsonl").to_str().unwrap()]).code(1);
    let lines: Vec<&str> =
        validated.stdout.lines().filter(|l| l.starts_with("  line ") || l.starts_with("  amounts:")).collect();
    assert_eq!(
        lines,
        [
            "  amounts:          line 2: 1,200.50 THB (as a customer sees them)",
            "  line 3: amount: amount `0.30000000000000004` has more decimals than thb allows (2); it is never rounded \
             (Products!C3)",
        ],
        "{}",
        validated.stdout
    );
}
